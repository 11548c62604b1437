"""`make compose-demo`'s run summary, inside a worker: the same tables as `make demo`, read with the
edgeops_minio connection (the pipeline's service account, never root)."""

from __future__ import annotations

import json
import os
import subprocess


def store_env() -> dict[str, str]:
    from tasks.core.names import ENV_ENDPOINT, MINIO_CONN_ID

    out = subprocess.run(["airflow", "connections", "get", MINIO_CONN_ID, "-o", "json"], capture_output=True,
                         text=True, check=True).stdout
    conn = json.loads(out[out.index("["):])[0]
    extra = conn.get("extra_dejson")
    if not isinstance(extra, dict):
        extra = json.loads(conn.get("extra") or "{}")
    return {"AWS_ACCESS_KEY_ID": conn["login"], "AWS_SECRET_ACCESS_KEY": conn["password"],
            ENV_ENDPOINT: extra.get("endpoint_url", "")}


def main(run_id: str) -> None:
    os.environ.update(store_env())
    from scripts.demo import _variants, run_header
    from tasks.core.keys import run_key
    from tasks.core.storage import ArtifactStore
    from tasks.registry import runs

    manifest = runs.resolve(ArtifactStore.from_env(), run_key(run_id))
    print(run_header(manifest))
    _variants(manifest)


def rollout(rollout_run_id: str) -> None:
    """The rollout record's summary, as `make demo` prints it (per-group choice, then every device)."""
    os.environ.update(store_env())
    from scripts.demo import rollout_summary
    from tasks.core.keys import run_key

    rollout_summary(run_key(rollout_run_id))
