"""``kubernetes`` runner: the same step as a KubernetesPodOperator, the scale-out path on an existing cluster.

Credentials come from a Kubernetes Secret (``execution.k8s_secret``, keys AWS_ACCESS_KEY_ID /
AWS_SECRET_ACCESS_KEY), never from the pod spec. The step writes its result to /airflow/xcom/return.json,
which the operator's XCom sidecar returns. No cluster exists on the dev stack: tests render the pod spec.
"""

from __future__ import annotations

from typing import Any

from edgeops_airflow.runners.common import StepRequest

XCOM_FILE = "/airflow/xcom/return.json"


def k8s_memory(limit: str) -> str:
    """Docker-style '8g' / '512m' -> Kubernetes '8Gi' / '512Mi'."""
    units = {"k": "Ki", "m": "Mi", "g": "Gi"}
    return limit[:-1] + units[limit[-1].lower()] if limit[-1:].lower() in units else limit


def pod_operator(request: StepRequest) -> Any:
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
    from kubernetes.client import models as k8s

    execution = request.config.execution
    public, _ = request.split_env()
    memory, cpus = k8s_memory(execution.memory_limit), str(execution.cpus)
    return KubernetesPodOperator(
        task_id=f"{request.task_id}__pod", name=f"edgeops-{request.step}", namespace=execution.k8s_namespace,
        image=request.image(), image_pull_policy="IfNotPresent", cmds=["edgeops"],
        arguments=[*request.argv, "--result-file", XCOM_FILE], env_vars=public,
        env_from=[k8s.V1EnvFromSource(secret_ref=k8s.V1SecretEnvSource(name=execution.k8s_secret))],
        container_resources=k8s.V1ResourceRequirements(requests={"memory": memory, "cpu": cpus},
                                                       limits={"memory": memory}),
        labels={"app.kubernetes.io/name": "edgeops", "edgeops/step": request.step},
        do_xcom_push=True, get_logs=True, on_finish_action="delete_pod",
    )


class KubernetesRunner:
    def __init__(self, request: StepRequest) -> None:
        self.request = request
        self.pod_op: Any = None

    def run(self, context: Any) -> dict[str, Any]:
        self.pod_op = pod_operator(self.request)
        return self.pod_op.execute(context)

    def kill(self) -> None:
        if self.pod_op is not None:
            self.pod_op.on_kill()
