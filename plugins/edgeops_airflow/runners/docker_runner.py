"""``docker`` runner: the docker provider's DockerOperator runs the step on the step image (host network).

Credentials travel as ``private_environment`` (never rendered or logged); artifacts go only through MinIO.
The image tag is the content hash of the step code (tasks.core.version), so a worker refuses a stale image.
Containers are always removed, failed ones too: they would keep the store secret in their environment.
"""

from __future__ import annotations

import re
from typing import Any

from airflow.sdk.exceptions import AirflowException, AirflowFailException

from edgeops_airflow.runners.common import StepRequest, failure, last_json

DOCKER_URL = "unix:///var/run/docker.sock"


class DockerRunner:
    def __init__(self, request: StepRequest) -> None:
        self.request = request
        self.docker_op: Any = None

    def _check_image(self, image: str) -> None:
        """Fail before the operator would try to pull (there is no registry for a stale tag)."""
        try:
            client = self.docker_op.cli  # the operator's own client, from its hook
            present = client.images(name=image)
            built = sorted(t for i in client.images(name=image.split(":")[0]) for t in i.get("RepoTags") or [])
        except Exception as exc:  # noqa: BLE001 - docker raises several connection errors
            msg = f"container engine unreachable at {DOCKER_URL} ({exc}): run scripts/engine.sh"
            raise AirflowException(msg) from exc
        if not present:
            raise AirflowFailException(
                f"step image {image} is missing or stale for this code (found: {built or 'none'}); "
                "build it with: scripts/images.sh tasks"
            )

    def run(self, context: Any) -> dict[str, Any]:
        from airflow.providers.docker.exceptions import DockerContainerFailedException
        from airflow.providers.docker.operators.docker import DockerOperator

        req, execution = self.request, self.request.config.execution
        image = req.image()
        env, secrets = req.split_env()
        self.docker_op = DockerOperator(
            task_id=f"{req.task_id}__docker", image=image, command=list(req.argv), docker_url=DOCKER_URL,
            environment=env, private_environment=secrets, network_mode="host", auto_remove="force",
            mem_limit=execution.memory_limit, cpus=execution.cpus, mount_tmp_dir=False, xcom_all=True,
            do_xcom_push=True, tty=False, labels={"org.edgeops.run": req.run_id, "org.edgeops.step": req.step},
        )
        self._check_image(image)
        req.log.info("docker runner: %s (memory limit %s, cpus %s)", image, execution.memory_limit, execution.cpus)
        try:
            lines = self.docker_op.execute(context)
        except DockerContainerFailedException as exc:
            match = re.search(r"'StatusCode': (\d+)", str(exc))
            tail = "\n".join(str(x) for x in (exc.logs or [])[-15:])
            raise failure(req.step, int(match.group(1)) if match else None, tail) from exc
        return last_json(lines if isinstance(lines, list) else [lines or ""], req.step)

    def kill(self) -> None:
        if self.docker_op is not None:
            self.docker_op.on_kill()
