"""Fleet rollout: plan, canary deploy + benchmark, canary gate, promote or switch back, later waves, record.

This file only wires tasks. Decisions live in ``tasks/fleet/rollout.py``, device work in the operators of
``plugins/edgeops_airflow``; every arrow carries a declared record (``tasks/fleet/records.py``).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.sdk import DAG, get_current_context, task
from edgeops_airflow.device_operators import DeviceBenchmarkOperator, DeviceDeployOperator, DeviceSwitchOperator
from edgeops_airflow.fan_out import fan_out, succeeded
from edgeops_airflow.rollout import blessed_model_asset, rollout_params

from tasks.core.config import BenchConfig, DeployConfig
from tasks.core.names import DEVICE_POOL

DOC = """
### edgeops rollout

Ships a **blessed** nightly run to the fleet (`config/fleet.json`: devices, groups, waves, budgets), or rolls
devices back. Runs when `edgeops_nightly` announces a blessed model (the `edgeops_blessed_model` asset), or by
hand with **Trigger DAG w/ config**.

* **Canary first.** The lowest wave asked for (wave 0 for the fleet) gets every blessed variant and is
  benchmarked on the device. The **canary gate** checks each variant against the group's budgets (p95 latency,
  peak RSS, on-device accuracy within a tolerance of the host's on the same images) and picks per group the
  passing variant with the best test accuracy. A failed canary stops the rollout and switches the canaries
  back; the run fails and says why.
* **Later waves** then get their group's variant, in parallel (mapped tasks in the `edgeops_devices` pool);
  `max_failed` of them may fail or be offline (they are marked stale in `edgeops fleet status`).
* **Rollback**: `action=rollback`, devices or groups, `run_id` of a release they keep (empty: previous).
* Every switch writes `devices/<name>/state.json`; the run writes `rollouts/<id>/record.json` last.
"""

DEVICE_TASK_TIMEOUT = timedelta(seconds=max(DeployConfig.TASK_TIMEOUT_S, BenchConfig.TASK_TIMEOUT_S))

with DAG(
    dag_id="edgeops_rollout",
    description="Canary rollout of a blessed model to the Pi fleet, on-device gate, rollback",
    schedule=[blessed_model_asset()],
    catchup=False,
    max_active_runs=1,
    default_args={"owner": "edgeops", "retries": 1, "retry_delay": timedelta(seconds=15),
                  "execution_timeout": timedelta(minutes=10)},
    params=rollout_params(),
    doc_md=DOC,
    tags=["edgeops", "rollout", "raspberry-pi"],
) as dag:

    @task(multiple_outputs=True, retries=0)
    def plan() -> dict[str, Any]:  # a RolloutPlan
        """Validate the form, the devices and the run (blessed?) before any device is touched."""
        from edgeops_airflow.rollout import plan as make_plan

        ctx = get_current_context()
        return make_plan(dict(ctx["params"]), ctx["run_id"], ctx["dag_run"].clear_number or 0,
                         ctx.get("triggering_asset_events")).to_xcom()

    @task(trigger_rule="all_done", retries=0, multiple_outputs=False)
    def canary_gate(plan: dict[str, Any], deploys: Any, benches: Any) -> dict[str, Any]:  # a CanaryVerdict
        from edgeops_airflow.rollout import judge_canary

        return judge_canary(plan, deploys, benches)

    @task(trigger_rule="all_done", retries=0, multiple_outputs=False)
    def record(plan: dict[str, Any], verdict: Any, canary: Any, promoted: Any, waves: Any, canary_bench: Any,
               wave_bench: Any, switched_back: Any, rolled_back: Any) -> dict[str, Any]:  # a RolloutRecord
        from edgeops_airflow.rollout import finish

        return finish(plan, verdict, [canary, promoted, waves], [canary_bench, wave_bench],
                      [switched_back, rolled_back], get_current_context()["run_id"])

    p = plan()
    common: dict[str, Any] = {"rollout_id": p["rollout_id"], "config": p["config"], "pool": DEVICE_POOL,
                              "map_index_template": "{{ task.target['device'] }}",
                              "execution_timeout": DEVICE_TASK_TIMEOUT}
    bench_common = {**common, "map_index_template": "{{ task.deploy['device'] }}"}
    shipped = {"verdict": p["verdict"], "manifest": p["manifest"]}  # the pinned manifest version, signed for

    canary = DeviceDeployOperator.partial(task_id="canary_deploy", **shipped, **common).expand(
        target=fan_out.override(task_id="canaries")(p, "canary"))
    canary_bench = DeviceBenchmarkOperator.partial(task_id="canary_benchmark", **bench_common).expand(
        deploy=succeeded.override(task_id="canaries_deployed")(canary.output))
    verdict = canary_gate(p, canary.output, canary_bench.output)
    promoted = DeviceDeployOperator.partial(task_id="promote", action="promote", **shipped,
                                            **common).expand(target=fan_out.override(task_id="promotions")(
                                                verdict, "promote"))
    waves = DeviceDeployOperator.partial(task_id="wave_deploy", **shipped, **common).expand(
        target=fan_out.override(task_id="later_waves")(verdict, "later"))
    wave_bench = DeviceBenchmarkOperator.partial(task_id="wave_benchmark", **bench_common).expand(
        deploy=succeeded.override(task_id="waves_deployed")(waves.output))
    switched_back = DeviceSwitchOperator.partial(task_id="switch_back", **common).expand(
        target=fan_out.override(task_id="canary_rollbacks")(verdict, "rollback"))
    rolled_back = DeviceSwitchOperator.partial(task_id="rollback", **common).expand(
        target=fan_out.override(task_id="rollbacks")(p, "switches"))
    record(p, verdict, canary.output, promoted.output, waves.output, canary_bench.output, wave_bench.output,
           switched_back.output, rolled_back.output)
