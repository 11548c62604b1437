"""The on-device benchmark of a kept release: its own bench.py, run by the pinned runtime venv."""

from __future__ import annotations

import logging
from shlex import quote

from edgeops_airflow.device_transport import DeviceTransport
from tasks.core.config import BenchConfig
from tasks.core.exceptions import DelegateError, DeviceError
from tasks.device import layout
from tasks.device.records import BenchRun, bench_doc, bench_error
from tasks.device.runtime import RuntimeOptions

log = logging.getLogger(__name__)


def benchmark(t: DeviceTransport, venv_python: str, release_id: str, modes: list[str], bench: BenchConfig,
              label: str, runtime: RuntimeOptions | None = None) -> BenchRun:
    """Run the release's bench.py with the runtime venv over the given modes; return its JSON document.

    ``runtime`` is the device group's threads and delegate (default: XNNPACK with ``bench.threads``); a
    delegate that does not load or apply raises ``DelegateError`` (fatal: never retried). Mode names are safe
    names (``device_release.safe_name``) by the time they get here."""
    runtime = runtime or RuntimeOptions(threads=bench.threads)
    release = layout.release_path(t.root, release_id)
    models = " ".join(f"--model {quote(layout.variant_file(m))}" for m in modes)
    command = (f"cd {quote(release)} && {quote(venv_python)} {layout.BENCH} {models} "
               f"--sample {layout.SAMPLE} "
               f"--warmup {bench.warmup} --runs {bench.runs} {' '.join(map(quote, runtime.bench_args()))} "
               f"--label {quote(label)}")
    what = f"benchmark of release {release_id}"
    log.info("%s: benchmarking %s of release %s (%s, %s)", t.who, ", ".join(modes), release_id, label,
             runtime.to_xcom())
    rc, out, err = t.run(command, bench.timeout_s, check=False, what=what)
    if (delegate := bench_error(out)) is not None:
        raise DelegateError(f"{t.who}: {what} failed: {delegate}")
    if rc != 0:
        tail = "\n".join(err.strip().splitlines()[-15:]) or out.strip()[-1500:]
        raise DeviceError(f"{t.who}: {what} failed with exit {rc}:\n{tail}")
    doc = bench_doc(out)
    if doc.get("schema") != 1 or not isinstance(doc.get("results"), dict):
        raise DeviceError(f"{t.who}: bench.py printed an unexpected document: {out.strip()[-300:]!r}")
    facts = doc.get("device")
    return BenchRun(label=str(doc.get("label", label)), facts=facts if isinstance(facts, dict) else {},
                    results=doc["results"], document=doc)
