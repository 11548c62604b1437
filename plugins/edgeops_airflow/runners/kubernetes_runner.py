"""``kubernetes`` runner: the same step as a KubernetesPodOperator, the scale-out path on an existing cluster.

Credentials come from a Kubernetes Secret (``execution.k8s_secret``, keys AWS_ACCESS_KEY_ID /
AWS_SECRET_ACCESS_KEY), never from the pod spec. The step writes its result to /airflow/xcom/return.json,
which the operator's XCom sidecar returns. No cluster exists on the dev stack: tests render the pod spec.
"""

from __future__ import annotations

from typing import Any

from edgeops_airflow.runners.docker_runner import split_secrets, step_image

XCOM_FILE = "/airflow/xcom/return.json"


def pod_operator(op: Any, env: dict[str, str]) -> Any:
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
    from kubernetes.client import models as k8s

    execution = op.config.get("execution") or {}
    public, _ = split_secrets(env)
    memory, cpus = execution.get("memory_limit") or "8g", str(execution.get("cpus") or 1)
    memory = memory.upper().replace("G", "Gi") if memory[-1:].lower() == "g" else memory
    return KubernetesPodOperator(
        task_id=f"{op.task_id}__pod", name=f"edgeops-{op.step}", namespace=execution.get("k8s_namespace") or "edgeops",
        image=step_image(execution), image_pull_policy="IfNotPresent", cmds=["edgeops"],
        arguments=[*op.command(), "--result-file", XCOM_FILE], env_vars=public,
        env_from=[k8s.V1EnvFromSource(secret_ref=k8s.V1SecretEnvSource(name=execution.get("k8s_secret")
                                                                       or "edgeops-minio"))],
        container_resources=k8s.V1ResourceRequirements(requests={"memory": memory, "cpu": cpus},
                                                       limits={"memory": memory}),
        labels={"app.kubernetes.io/name": "edgeops", "edgeops/step": op.step},
        do_xcom_push=True, get_logs=True, on_finish_action="delete_pod",
    )


class Runner:
    def __init__(self, op: Any) -> None:
        self.op = op
        self.pod_op: Any = None

    def run(self, context: Any) -> dict[str, Any]:
        self.pod_op = pod_operator(self.op, self.op.step_env())
        return self.pod_op.execute(context)

    def kill(self) -> None:
        if self.pod_op is not None:
            self.pod_op.on_kill()
