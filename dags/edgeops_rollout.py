"""Fleet rollout: plan, canary deploy + benchmark, canary gate, promote or switch back, later waves, record.

This file only wires tasks. Decisions live in ``tasks/fleet/rollout.py``, device work in the operators of
``plugins/edgeops_airflow``; every arrow carries a declared record (``tasks/fleet/records.py``).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.sdk import DAG, TaskGroup, get_current_context, task
from edgeops_airflow.device_operators import DeviceBenchmarkOperator, DeviceDeployOperator, DeviceSwitchOperator
from edgeops_airflow.fan_out import fan_out, succeeded
from edgeops_airflow.notify import task_failed
from edgeops_airflow.reliability import ALL_DONE_RETRIES, PLUMBING_RETRIES
from edgeops_airflow.rollout import blessed_model_asset, rollout_params
from edgeops_airflow.traffic import TrafficSensor
from edgeops_airflow.ui.links import ROLLOUT_LINKS

from tasks.core.config import BenchConfig, DeployConfig
from tasks.core.names import DEVICE_POOL, ROLLOUT_DAG_ID
from tasks.fleet.records import SwitchAction
from tasks.fleet.traffic import POKE_S, SENSOR_TIMEOUT_S

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
* **Traffic canary** (groups with `traffic_canary`): `canary.traffic` waits (reschedule mode) until each canary
  served `min_requests` of the new release or `max_wait_s` passed, then judges error rate, served p95 and the
  mean-confidence drop vs the previous release; too little traffic leaves the decision to the benchmarks.
* **Later waves** then get their group's variant, in parallel (mapped tasks in the `edgeops_devices` pool);
  `max_failed` of them may fail or be offline (they are marked stale in `edgeops fleet status`).
* **Rollback**: `action=rollback`, devices or groups, `run_id` of a release they keep (empty: previous).
* Every switch writes `devices/<name>/state.json`; the run writes `rollouts/<id>/record.json` last.
"""

DEVICE_TASK_TIMEOUT = timedelta(seconds=max(DeployConfig.TASK_TIMEOUT_S, BenchConfig.TASK_TIMEOUT_S))

with DAG(
    dag_id=ROLLOUT_DAG_ID,
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

    @task(multiple_outputs=True, on_failure_callback=task_failed, **PLUMBING_RETRIES)
    def plan() -> dict[str, Any]:  # a RolloutPlan
        """Validate the form, the devices and the run (blessed?) before any device is touched: bad input fails
        at once, an infrastructure error is retried."""
        from edgeops_airflow.reliability import fatal_is_final
        from edgeops_airflow.rollout import plan as make_plan

        ctx = get_current_context()
        with fatal_is_final():
            return make_plan(dict(ctx["params"]), ctx["run_id"], ctx["dag_run"].clear_number or 0,
                             ctx.get("triggering_asset_events")).to_xcom()

    @task(trigger_rule="all_done", multiple_outputs=False, **ALL_DONE_RETRIES)
    def canary_gate(plan: dict[str, Any], deploys: Any, benches: Any, traffic: Any) -> dict[str, Any]:
        from edgeops_airflow.reliability import fatal_is_final
        from edgeops_airflow.rollout import judge_canary

        with fatal_is_final():  # -> a CanaryVerdict
            return judge_canary(plan, deploys, benches, traffic)

    # a failed canary, a rollback or too many failed devices fail record with the reasons: that notifies
    @task(trigger_rule="all_done", multiple_outputs=False, on_failure_callback=task_failed, **ALL_DONE_RETRIES)
    def record(plan: dict[str, Any], verdict: Any, canary: Any, promoted: Any, waves: Any, canary_bench: Any,
               wave_bench: Any, switched_back: Any, rolled_back: Any) -> dict[str, Any]:  # a RolloutRecord
        from edgeops_airflow.reliability import fatal_is_final
        from edgeops_airflow.rollout import finish
        from edgeops_airflow.ui.links import persist_rollout_link

        persist_rollout_link(get_current_context(), plan["rollout_id"])  # the report exists even if it failed
        with fatal_is_final():  # a failed rollout is AirflowFailException: written, then final
            return finish(plan, verdict, [canary, promoted, waves], [canary_bench, wave_bench],
                          [switched_back, rolled_back], get_current_context()["run_id"])

    p = plan()
    common: dict[str, Any] = {"rollout_id": p["rollout_id"], "config": p["config"], "pool": DEVICE_POOL,
                              "map_index_template": "{{ task.target['device'] }}",
                              "execution_timeout": DEVICE_TASK_TIMEOUT}
    bench_common = {**common, "map_index_template": "{{ task.deploy['device'] }}"}
    shipped = {"verdict": p["verdict"], "manifest": p["manifest"]}  # the pinned manifest version, signed for

    # The grid shows three groups; the fan-out tasks inside them only reshape records for `expand`.
    with TaskGroup("canary", tooltip="wave 0: deploy, benchmark on the device, gate, then promote or switch back"):
        canary = DeviceDeployOperator.partial(task_id="deploy", **shipped, **common).expand(
            target=fan_out.override(task_id="targets")(p, "canary"))
        canary_bench = DeviceBenchmarkOperator.partial(task_id="benchmark", **bench_common).expand(
            deploy=succeeded.override(task_id="deployed")(canary.output))
        # groups with a traffic canary: wait for the canaries' real traffic (rescheduled between pokes), judge it
        watched = TrafficSensor(task_id="traffic", plan=p, deploys=canary.output, poke_interval=POKE_S,
                                timeout=SENSOR_TIMEOUT_S, trigger_rule="all_done", **ALL_DONE_RETRIES)
        canary_bench >> watched  # after the benchmark: bench.py would load the same cores
        verdict = canary_gate.override(task_id="gate")(p, canary.output, canary_bench.output, watched.output)
        promoted = DeviceDeployOperator.partial(task_id="promote", action=SwitchAction.PROMOTE,
                                                **shipped, **common).expand(
            target=fan_out.override(task_id="promotions")(verdict, "promote"))
        switched_back = DeviceSwitchOperator.partial(task_id="switch_back", **common).expand(
            target=fan_out.override(task_id="switch_backs")(verdict, "rollback"))
    with TaskGroup("waves", tooltip="the later waves: deploy their group's variant, benchmark on the device"):
        waves = DeviceDeployOperator.partial(task_id="deploy", **shipped, **common).expand(
            target=fan_out.override(task_id="targets")(verdict, "later"))
        wave_bench = DeviceBenchmarkOperator.partial(task_id="benchmark", **bench_common).expand(
            deploy=succeeded.override(task_id="deployed")(waves.output))
    with TaskGroup("rollback", tooltip="action=rollback: switch the devices asked for to a release they keep"):
        rolled_back = DeviceSwitchOperator.partial(task_id="switch", **common).expand(
            target=fan_out.override(task_id="targets")(p, "switches"))
    done = record(p, verdict, canary.output, promoted.output, waves.output, canary_bench.output, wave_bench.output,
                  switched_back.output, rolled_back.output)
    done.operator.operator_extra_links = ROLLOUT_LINKS  # Rollout report (edgeops_airflow/ui/links.py)
