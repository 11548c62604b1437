"""What every step receives: the resolved config, the run id, input URIs/values, and the store."""

from __future__ import annotations

import logging
import subprocess
import time
from collections.abc import Generator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tasks.config import PipelineConfig, safe_run_id
from tasks.exceptions import ConfigError
from tasks.storage import ArtifactStore

log = logging.getLogger("edgeops.step")


@dataclass(frozen=True)
class StepContext:
    config: PipelineConfig
    run_id: str
    store: ArtifactStore
    inputs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.run_id != safe_run_id(self.run_id):
            raise ConfigError(f"run id {self.run_id!r} must be pre-sanitised (use {safe_run_id(self.run_id)!r})")

    def need(self, name: str) -> Any:
        if name not in self.inputs:
            raise ConfigError(f"this step needs input {name!r}; got {sorted(self.inputs)}")
        return self.inputs[name]


@contextmanager
def timed(what: str) -> Generator[None]:
    start = time.perf_counter()
    log.info("%s ...", what)
    yield
    log.info("%s done in %.1fs", what, time.perf_counter() - start)


def code_version() -> str:
    """Git sha of the code running the step (env override for images built without .git)."""
    import os

    if os.environ.get("EDGEOPS_CODE_VERSION"):
        return os.environ["EDGEOPS_CODE_VERSION"]
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent, capture_output=True,
                             text=True, timeout=10, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=Path(__file__).resolve().parent, capture_output=True, text=True, timeout=10)
        return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
