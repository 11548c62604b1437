"""A load generator that runs ON a device (``python -c``, shipped as text by tests/device_load.py): keep-alive
``POST /v1/classify`` requests to edgeops-serve over its Unix socket, as an app on the Pi would send them.

Standalone: the standard library, plus numpy only for the ``frames`` and ``shifted`` bodies.

    python -c "$SCRIPT" <serve state dir> [--seconds S] [--max N] [--body KIND] [--bad-every N] [--pause S] [--wait]

Runs until ``<state>/.load-stop`` exists, S seconds pass or N requests were sent. After its first answered
request it touches ``<state>/.load-running`` (the caller waits for it). Bodies (``--body``):
- ``frames``: the serving release's sample frames (``current/sample.npz``), cycled;
- ``shifted``: the same frames saturated to their maximum (a camera that sees only white);
- ``raw``: one 8x8x3 uint8 tensor (``X-Shape``/``X-Dtype`` headers);
- ``npy:<base64>``: one given ``.npy`` frame.
``--bad-every N`` makes every Nth request malformed (a 400 is then expected and not a failure). ``--wait``: until
the first answer, a missing or refused socket is waiting for the service, not a failure. ``--pause S`` between
requests (a steady trickle rather than as fast as the device answers).
Prints one JSON line: ok, failed (the first 20), n_failed, statuses, releases (200s per serving release).
"""

import argparse
import base64
import http.client
import io
import json
import socket
import time
from pathlib import Path

RAW = (bytes(range(192)), {"Content-Type": "application/octet-stream", "X-Shape": "8,8,3", "X-Dtype": "uint8"})
MALFORMED = (b"x", {"Content-Type": "application/octet-stream", "X-Shape": "1,1,1", "X-Dtype": "uint8"})
NPY = {"Content-Type": "application/x-npy"}


class Unix(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=30)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(30)
        self.sock.connect(self.path)


def bodies(state: Path, kind: str) -> list[tuple[bytes, dict[str, str]]]:
    if kind == "raw":
        return [RAW]
    if kind.startswith("npy:"):
        return [(base64.b64decode(kind[4:]), NPY)]
    import numpy as np

    out = []
    for x in np.load(state.parent / "current" / "sample.npz")["x"][:32]:
        buf = io.BytesIO()
        np.save(buf, (np.full_like(x, x.max()) if kind == "shifted" else x).astype(np.float32))
        out.append((buf.getvalue(), NPY))
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("state", type=Path)
    p.add_argument("--seconds", type=float, default=600)
    p.add_argument("--max", type=int, default=0)
    p.add_argument("--body", default="frames")
    p.add_argument("--bad-every", type=int, default=0)
    p.add_argument("--pause", type=float, default=0.0)
    p.add_argument("--wait", action="store_true")
    a = p.parse_args()
    sent, end, conn, answered = bodies(a.state, a.body), time.monotonic() + a.seconds, None, False
    ok, n, failed, statuses, releases = 0, 0, [], {}, {}
    while not (a.state / ".load-stop").exists() and time.monotonic() < end and not (a.max and n >= a.max):
        n += 1
        malformed = a.bad_every and n % a.bad_every == 0
        body, head = MALFORMED if malformed else sent[n % len(sent)]
        try:
            if conn is None:
                conn = Unix(json.loads((a.state / "endpoint.json").read_text())["socket"])
            conn.request("POST", "/v1/classify", body, head)
            r = conn.getresponse()
            doc = json.loads(r.read())
        except (OSError, http.client.HTTPException, ValueError) as exc:
            if conn is not None:
                conn.close()
            conn = None
            if not (a.wait and not answered):
                failed.append(repr(exc))
            time.sleep(0.2)
            continue
        if not answered:
            answered = True
            (a.state / ".load-running").touch()
        statuses[r.status] = statuses.get(r.status, 0) + 1
        if r.status == 200:
            ok += 1
            releases[doc["release"]] = releases.get(doc["release"], 0) + 1
        elif not (malformed and r.status == 400):
            failed.append(r.status)
        time.sleep(a.pause)
    print(json.dumps({"ok": ok, "failed": failed[:20], "n_failed": len(failed), "statuses": statuses,
                      "releases": releases}))


if __name__ == "__main__":
    main()
