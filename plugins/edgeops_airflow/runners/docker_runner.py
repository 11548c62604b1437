"""``docker`` runner: the docker provider's DockerOperator runs the step on the step image (host network).

Credentials travel as ``private_environment`` (never rendered or logged); artifacts go only through MinIO.
The image tag is the content hash of the step code (tasks.version), so a worker refuses a stale image.
"""

from __future__ import annotations

import re
from typing import Any

from airflow.sdk.exceptions import AirflowException, AirflowFailException

from edgeops_airflow.step_operator import failure, last_json

DOCKER_URL = "unix:///var/run/docker.sock"
SECRET_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")


def step_image(execution: dict[str, Any]) -> str:
    from tasks.version import image_tag

    return execution.get("image") or image_tag()


def split_secrets(env: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    public = {k: v for k, v in env.items() if k not in SECRET_KEYS}
    return public, {k: v for k, v in env.items() if k in SECRET_KEYS}


class Runner:
    def __init__(self, op: Any) -> None:
        self.op = op
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

        op, execution = self.op, self.op.config.get("execution") or {}
        image = step_image(execution)
        env, secrets = split_secrets(op.step_env())
        self.docker_op = DockerOperator(
            task_id=f"{op.task_id}__docker", image=image, command=op.command(), docker_url=DOCKER_URL,
            environment=env, private_environment=secrets, network_mode="host", auto_remove="success",
            mem_limit=execution.get("memory_limit") or None, cpus=float(execution.get("cpus") or 1.0),
            mount_tmp_dir=False, xcom_all=True, do_xcom_push=True, tty=False,
            labels={"org.edgeops.run": op.run_id, "org.edgeops.step": op.step},
        )
        self._check_image(image)
        op.log.info("docker runner: %s (memory limit %s)", image, execution.get("memory_limit"))
        try:
            lines = self.docker_op.execute(context)
        except DockerContainerFailedException as exc:
            match = re.search(r"'StatusCode': (\d+)", str(exc))
            tail = "\n".join(str(x) for x in (exc.logs or [])[-15:])
            raise failure(op.step, int(match.group(1)) if match else None, tail) from exc
        return last_json(lines if isinstance(lines, list) else [lines or ""], op.step)

    def kill(self) -> None:
        if self.docker_op is not None:
            self.docker_op.on_kill()
