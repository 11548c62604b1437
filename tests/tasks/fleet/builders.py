"""Real fleet records for tests: bench figures, device outcomes, rollout records, device states."""

from __future__ import annotations

from tasks.core.results import ModelBench
from tasks.fleet.records import DeviceOutcome, DeviceState, RolloutRecord, split_release


def bench(p50: float, p95: float, accuracy: float = 0.97, rss: float = 60.0, size: int = 50_000) -> ModelBench:
    return ModelBench(latency_ms={"p50": p50, "p90": p50 * 1.1, "p95": p95, "p99": p95 * 1.1}, accuracy=accuracy,
                      load_ms=3.0, peak_rss_mb=rss, samples=64, input_dtype="float32", size_bytes=size)


def outcome(device: str, group: str, wave: int, status: str, release: str | None = None, variant: str | None = None,
            label: str = "host", p50: float | None = None, note: str = "") -> DeviceOutcome:
    models = {variant: bench(p50, p50 * 1.4)} if p50 is not None and variant else {}
    return DeviceOutcome(device=device, group=group, wave=wave, status=status, release=release, variant=variant,
                         bench=models, label=label if models else "", note=note)


def record(rollout_id: str, run_id: str, status: str, devices: list[DeviceOutcome], created_at: str,
           reasons: tuple[str, ...] = (), **kw) -> RolloutRecord:
    return RolloutRecord(rollout_id=rollout_id, action=kw.pop("action", "forward"), run_id=run_id, status=status,
                         reasons=reasons, devices=tuple(devices), created_at=created_at, **kw)


def state(device: str, release: str | None, rollout_id: str, switched_at: str, previous: str | None = None,
          action: str = "deploy") -> DeviceState:
    run_id, variant = split_release(release)
    return DeviceState(device=device, release=release, previous=previous, run_id=run_id, variant=variant,
                       rollout_id=rollout_id, action=action, switched_at=switched_at)
