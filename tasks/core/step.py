"""What every step receives: the resolved config, the run id, input URIs/values, and the store."""

from __future__ import annotations

import logging
import time
from collections.abc import Generator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from tasks.core.config import PipelineConfig
from tasks.core.exceptions import ConfigError
from tasks.core.keys import safe_run_id
from tasks.core.storage import ArtifactStore

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
