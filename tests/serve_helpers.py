"""edgeops-serve driven as a device runs it: a real subprocess over a real deploy-root layout, real HTTP clients.

Used by tests/tasks/device/test_serve.py and benchmarks/serve.py."""

from __future__ import annotations

import http.client
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tasks.device import layout

SERVE = Path(__file__).resolve().parents[1] / "tasks" / "device" / "serve.py"


def make_release(root: Path, release_id: str, files: dict[str, Path], variant: str,
                 labels: list[str] | None = None) -> Path:
    """``<root>/releases/<id>/`` as a deploy leaves it: the files, release.json, model.tflite -> <variant>.tflite."""
    final = Path(layout.release_path(str(root), release_id))
    final.mkdir(parents=True)
    for name, path in files.items():
        shutil.copyfile(path, final / name)
    (final / layout.RELEASE_META).write_text(json.dumps({"release": release_id, "current_variant": variant}))
    (final / layout.MODEL).symlink_to(layout.variant_file(variant))
    if labels is not None:
        (final / "labels.json").write_text(json.dumps(labels))
    return final


def switch(root: Path, release_id: str) -> None:
    """Point ``current`` at a release the way the deploy does: a new symlink renamed over the old one."""
    tmp = root / layout.CURRENT_TMP
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(layout.release_link(release_id))
    os.replace(tmp, root / layout.CURRENT)


class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float = 10.0) -> None:
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.socket_path)


class Client:
    """One keep-alive connection to edgeops-serve, over TCP (``port``) or the Unix socket (``path``)."""

    def __init__(self, port: int | None = None, path: str | None = None, timeout: float = 10.0) -> None:
        self.conn = (UnixConnection(path, timeout) if path else
                     http.client.HTTPConnection("127.0.0.1", port, timeout=timeout))

    def request(self, method: str, url: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
        self.conn.request(method, url, body=body, headers=headers or {})
        resp = self.conn.getresponse()
        return resp.status, json.loads(resp.read())

    def classify_npy(self, x: Any) -> tuple[int, dict[str, Any]]:
        import numpy as np

        buf = io.BytesIO()
        np.save(buf, x)
        return self.request("POST", "/v1/classify", buf.getvalue(), {"Content-Type": "application/x-npy"})

    def health(self) -> tuple[int, dict[str, Any]]:
        return self.request("GET", "/healthz")

    def close(self) -> None:
        self.conn.close()


class Serve:
    """``python serve.py --root ROOT ...`` started, waited for (endpoint.json, /healthz ready), stopped (SIGTERM).

    Without PYTHONPATH and from the deploy root, as on a device: the project is not importable."""

    def __init__(self, root: Path, *args: str, python: str = sys.executable, ready: bool = True) -> None:
        self.state = root / "serve-data"
        (self.state / "endpoint.json").unlink(missing_ok=True)
        self.log = open(root / "serve.log", "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([python, str(SERVE), "--root", str(root), "--state", str(self.state),
                                      "--http-port", "0", "--threads", "1", *args],
                                     stdout=self.log, stderr=subprocess.STDOUT, cwd=root,
                                     env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
        self.endpoint = self._wait_endpoint()
        self.port, self.socket = self.endpoint["http_port"], self.endpoint["socket"]
        if ready:
            self.wait_for(lambda h: h["ready"])

    def _wait_endpoint(self, timeout: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        path = self.state / "endpoint.json"
        while not path.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"serve.py did not start (exit {self.proc.poll()}): {self.output()}")
            time.sleep(0.05)
        return json.loads(path.read_text())

    def client(self, unix: bool = False) -> Client:
        return Client(path=self.socket) if unix else Client(port=self.port)

    def wait_for(self, cond: Any, timeout: float = 30.0) -> dict[str, Any]:
        """Poll /healthz until ``cond(doc)``; the last document."""
        client, deadline = self.client(), time.monotonic() + timeout
        try:
            while True:
                _, doc = client.health()
                if cond(doc):
                    return doc
                if time.monotonic() > deadline:
                    raise AssertionError(f"/healthz never satisfied the condition; last {doc}")
                time.sleep(0.05)
        finally:
            client.close()

    def output(self) -> str:
        if not self.log.closed:
            self.log.flush()
        return Path(self.log.name).read_text(errors="replace")[-3000:]

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode
