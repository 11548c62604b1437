"""The end of `make demo`: each device serves a few requests, then a collection brings their telemetry back.

Per device of the fleet, over its SSH connection: send ``EDGEOPS_DEMO_REQUESTS`` (20) classify requests to
edgeops-serve on the device (the runtime's python over the Unix socket, cycling through the release's own sample
frames, as a local application would), then restart the service so its open telemetry hour is written as final
(a collection only takes final files), then run ``edgeops collect`` and print, per device, what the telemetry in
MinIO says: the release served, requests, latency p50/p95 and the predicted-class histogram.
"""

from __future__ import annotations

import json
import os
import posixpath
import subprocess
import sys
from pathlib import Path
from shlex import quote
from typing import Any

REPO = Path(__file__).resolve().parents[1]
REQUESTS = int(os.environ.get("EDGEOPS_DEMO_REQUESTS", "20"))

# On the device: N requests over the Unix socket with the serving release's sample frames; one JSON line out.
_SEND = r"""
import http.client, io, json, os, socket, sys
import numpy as np
state, n = sys.argv[1], int(sys.argv[2])
ep = json.load(open(os.path.join(state, "endpoint.json")))
xs = np.load(os.path.join(state, "..", "current", "sample.npz"))["x"]
class U(http.client.HTTPConnection):
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX); self.sock.settimeout(30); self.sock.connect(ep["socket"])
c, ok, failed, release = U("localhost"), 0, 0, None
for i in range(n):
    buf = io.BytesIO(); np.save(buf, xs[i % len(xs)].astype(np.float32))
    c.request("POST", "/v1/classify", buf.getvalue(), {"Content-Type": "application/x-npy"})
    r = c.getresponse(); doc = json.loads(r.read())
    ok, failed = (ok + 1, failed) if r.status == 200 else (ok, failed + 1)
    release = doc.get("release", release)
print(json.dumps({"ok": ok, "failed": failed, "release": release}))
"""


def _export_connections(connections: dict[str, Any]) -> None:
    """The stack's connections as Airflow reads env connections (``edgeops collect`` reads them so too)."""
    for conn_id, conn in connections.items():
        os.environ[f"AIRFLOW_CONN_{conn_id.upper()}"] = json.dumps(conn)


def _serve_and_roll(device: Any, hooks: Any) -> dict[str, Any]:
    """Send the requests, then restart edgeops-serve (final telemetry) and wait until it serves again."""
    from tasks.device import app, layout
    from tasks.device.transport import EnvTransport

    with EnvTransport(device.name, device.connection) as t:
        python = posixpath.join(layout.serve_dir(t.root), layout.SERVE_RUNTIME, "bin", "python")
        data = layout.serve_data(t.root)
        out = t.run(f"{quote(python)} -c {quote(_SEND)} {quote(data)} {REQUESTS}", timeout=300)[1]
        sent = json.loads(out.strip().splitlines()[-1])
        t.run(app.restart_cmd(t.root), timeout=60)
        t.run(app.start_cmd(t.root, hooks), timeout=60)
        t.run(app.health_cmd(t.root, hooks, python, sent["release"], None), timeout=hooks.health_timeout_s + 30)
    return sent


def _telemetry(store: Any, device: str, release: str) -> dict[str, Any]:
    """The collected telemetry of ``device`` for ``release``: requests and classes summed over its files,
    latency from the file with the most requests (percentiles do not add up)."""
    from tasks.core import keys

    docs = [store.get_json(o["Key"]) for o in store.list(keys.telemetry(device, release, ""))]
    classes: dict[str, int] = {}
    for d in docs:
        for k, v in d["classes"].items():
            classes[k] = classes.get(k, 0) + v
    busiest = max(docs, key=lambda d: d["requests"], default=None)
    return {"files": len(docs), "requests": sum(d["requests"] for d in docs),
            "errors": sum(d["errors"] for d in docs), "latency": busiest["latency_ms"] if busiest else {},
            "classes": classes}


def serve_and_collect(connections: dict[str, Any], fleet_file: Path) -> bool:
    """Requests to each device, a collection, and the telemetry per device; False when a step failed."""
    from tasks.core.names import ENV_FLEET
    from tasks.core.storage import ArtifactStore
    from tasks.fleet.inventory import load_inventory

    _export_connections(connections)
    inventory = load_inventory(str(fleet_file) if fleet_file.exists() else None)
    print(f"\ndemo: {REQUESTS} requests to edgeops-serve on each device (on the device, over its Unix socket)",
          flush=True)
    sent, ok = {}, True
    for device in inventory.devices:
        try:
            sent[device.name] = _serve_and_roll(device, inventory.group(device.group).app)
        except Exception as exc:  # noqa: BLE001 - one device's failure is reported, the others still shown
            print(f"  {device.name}: not served: {type(exc).__name__}: {exc}")
            ok = False
    env = {**os.environ, ENV_FLEET: str(fleet_file)} if fleet_file.exists() else dict(os.environ)
    out = subprocess.run([sys.executable, "-m", "tasks.cli", "collect"], cwd=REPO, capture_output=True, text=True,
                         timeout=600, env=env)
    print("\n$ edgeops collect\n" + (out.stdout + (out.stderr[-1500:] if out.returncode else "")).rstrip())
    ok = ok and out.returncode == 0
    store = ArtifactStore.from_env()
    print(f"\n{'device':<9}{'release served':<44}{'sent':>6}{'failed':>7}{'requests':>9}{'p50 ms':>8}{'p95 ms':>8}"
          "  classes (telemetry in MinIO)")
    for name, s in sent.items():
        tel = _telemetry(store, name, s["release"])
        lat = tel["latency"]
        hist = " ".join(f"{k}:{v}" for k, v in sorted(tel["classes"].items(), key=lambda kv: int(kv[0])))
        print(f"{name:<9}{s['release']:<44}{s['ok']:>6}{s['failed']:>7}{tel['requests']:>9}"
              f"{_ms(lat.get('p50')):>8}{_ms(lat.get('p95')):>8}  {hist or '-'}")
        ok = ok and s["failed"] == 0 and tel["requests"] >= s["ok"]
    print("(requests: every request the telemetry counted for that release, earlier ones included; "
          "latency is the service's, on 'host' stand-ins)")
    return ok


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"
