#!/usr/bin/env python3
"""edgeops-serve: the device's model service. Serves ``<root>/current/model.tflite`` and hot-swaps it.

STANDALONE like bench.py: the standard library, numpy and LiteRT only, run by the device runtime's python; its
siblings serve_model.py (interpreter, body decoding) and serve_records.py (telemetry, samples) ship beside it.

    python serve.py --root /opt/edgeops [--state DIR] [--http-port 8470] [--socket PATH] --threads 4 \
        [--delegate /usr/lib/libedgetpu.so.1 --delegate-option device=usb ...]

Endpoints, on 127.0.0.1:<http-port> and on the Unix socket (both HTTP/1.1, keep-alive):
- ``POST /v1/classify``: a body in one of serve_model's formats -> ``{"index", "label", "probabilities",
  "confidence", "release", "variant"}``; 400 with the reason for a bad body, 503 while no release is ready;
- ``GET /healthz``: ``{"ready", "release", "variant", "uptime_s", "serving_since", "swaps", "failed"}``; 503 when
  not ready. ``failed`` is the last release that was refused (its id, why, when) or null.

Hot swap: on SIGHUP, and whenever ``current`` resolves to another directory (polled every ``--poll-s``), the new
release is opened beside the serving one and smoke-invoked; only then does the service point at it (one reference
assignment). A request holds the model it started on until it ends, so in-flight requests finish on the old
interpreter, and nothing is refused during the swap. A release that does not load or fails its smoke invoke is
never served: the old one keeps serving and /healthz reports the failed attempt. The same target is not retried
until ``current`` changes again or a SIGHUP asks for it.

``<state>/endpoint.json`` (written atomically once listening) gives the pid, the HTTP port and the socket path.
SIGTERM/SIGINT: stop listening, let the sample writer drain, write the open telemetry periods as final.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socketserver
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from serve_model import XNNPACK, BadInput, Model, decode, interpreter_module
from serve_records import Sampler, Telemetry, write_atomic

CURRENT = "current"  # tasks.device.layout.CURRENT (vendored: this file imports nothing from the project)
STATE = "serve-data"  # default state dir under the deploy root: telemetry/, samples/, serve.sock, endpoint.json
MB = 1024 * 1024


def log(msg: str) -> None:
    print(f"[serve] {msg}", file=sys.stderr, flush=True)


class Service:
    """The serving model and how it is replaced."""

    def __init__(self, args: argparse.Namespace, telemetry: Telemetry) -> None:
        self.args, self.telemetry = args, telemetry
        self.active: Model | None = None
        self.serving_since: float | None = None
        self.failed: dict[str, Any] | None = None
        self._failed_target: str | None = None
        self.swaps = 0
        self.started = time.time()
        self.wake = threading.Event()
        self.force = False

    def target(self) -> str | None:
        link = os.path.join(self.args.root, CURRENT)
        return os.path.realpath(link) if os.path.isdir(link) else None

    def reload(self, force: bool) -> None:
        """Open, smoke-invoke and swap in what ``current`` resolves to, unless it serves already (or it was
        refused already and no SIGHUP asks again)."""
        target = self.target()
        if target is None or (self.active is not None and self.active.path == target):
            return
        if target == self._failed_target and not force:
            return
        release = os.path.basename(target)
        try:
            model = Model(target, self.args.threads, self.args.delegate, self.args.delegate_options)
            model.smoke()
        except Exception as exc:  # noqa: BLE001 - whatever breaks a candidate, the serving model stays
            why = " ".join(f"{type(exc).__name__}: {exc}".split())[:500]
            self.failed = {"release": release, "why": why, "at": time.time()}
            self._failed_target = target
            log(f"release {release} NOT swapped in ({why}); still serving "
                f"{self.active.release if self.active else 'nothing'}")
            return
        self.telemetry.activated(release)  # before the swap: this activation's requests count from here on
        old, self.active = self.active, model  # the swap: one reference; requests on `old` finish on it
        self.serving_since, self.swaps = time.time(), self.swaps + (old is not None)
        self._failed_target = None
        log(f"serving {model.release} ({model.variant}, {model.shape})" + (f", was {old.release}" if old else ""))

    def watch(self, stop: threading.Event) -> None:
        while not stop.is_set():
            force, self.force = self.force, False
            try:
                self.reload(force)
            except OSError as exc:  # e.g. `current` switched mid-read: try again at the next poll
                log(f"reload: {exc}")
            self.wake.wait(self.args.poll_s)
            self.wake.clear()

    def health(self) -> tuple[int, dict[str, Any]]:
        m = self.active
        doc = {"ready": m is not None, "release": m.release if m else None, "variant": m.variant if m else None,
               "uptime_s": round(time.time() - self.started, 3), "serving_since": self.serving_since,
               "swaps": self.swaps, "failed": self.failed, "pid": os.getpid()}
        return (200 if m else 503), doc


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    service: Service
    telemetry: Telemetry
    sampler: Sampler
    max_body: int

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass

    def address_string(self) -> str:
        return str(self.client_address[0]) if self.client_address else "unix"

    def _reply(self, status: int, doc: dict[str, Any]) -> None:
        body = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if self.path == "/healthz":
            self._reply(*self.service.health())
        else:
            self._reply(404, {"error": f"no such path {self.path}: GET /healthz, POST /v1/classify"})

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        text = self.headers.get("Content-Length", "")
        length = int(text) if text.isdigit() else -1
        if self.path != "/v1/classify":
            self.close_connection = True
            return self._reply(404, {"error": f"no such path {self.path}: POST /v1/classify"})
        if not 0 < length <= self.max_body:
            self.close_connection = True
            return self._reply(413 if length > 0 else 411, {"error": f"need a Content-Length of 1..{self.max_body}"})
        body = self.rfile.read(length)
        model = self.service.active  # this request's model, even if another one is swapped in meanwhile
        if model is None:
            return self._reply(503, {"error": "no release is ready", **self.service.health()[1]})
        start = time.perf_counter()
        try:
            x = decode(body, self.headers.get("Content-Type", ""), self.headers)
            p = model.classify(x)
        except BadInput as exc:
            self.telemetry.record(model.release, 0.0, None, None, 400)
            return self._reply(400, {"error": str(exc), "release": model.release})
        except Exception as exc:  # noqa: BLE001 - one failed request is a 500, never a dead service
            self.telemetry.record(model.release, 0.0, None, None, 500)
            return self._reply(500, {"error": f"{type(exc).__name__}: {exc}", "release": model.release})
        latency_ms = (time.perf_counter() - start) * 1000
        self.telemetry.record(model.release, latency_ms, p.index, p.confidence)
        self.sampler.offer(model.release, x, p.probabilities, p.index)
        self._reply(200, {"index": p.index, "label": p.label, "probabilities": p.probabilities,
                          "confidence": p.confidence, "release": model.release, "variant": model.variant})


class UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


class LocalHTTPServer(ThreadingHTTPServer):
    daemon_threads = True


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", required=True, help="the deploy root: serves <root>/current/model.tflite")
    p.add_argument("--state", help=f"telemetry, samples, socket (default <root>/{STATE})")
    p.add_argument("--http-port", type=int, default=8470, help="on 127.0.0.1; 0 picks a free port; -1: no HTTP")
    p.add_argument("--socket", help="Unix socket path (default <state>/serve.sock); '' for none")
    p.add_argument("--threads", type=int, default=4)
    p.add_argument("--delegate", default=XNNPACK, help=f"{XNNPACK!r} or an external delegate library's absolute path")
    p.add_argument("--delegate-option", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--poll-s", type=float, default=1.0, help="how often `current` is checked for a new release")
    p.add_argument("--max-body-mb", type=float, default=16.0)
    p.add_argument("--telemetry-period-s", type=float, default=3600.0, help="one telemetry file per period")
    p.add_argument("--telemetry-flush-s", type=float, default=10.0)
    p.add_argument("--telemetry-budget-mb", type=float, default=5.0)
    p.add_argument("--sample-threshold", type=float, default=0.5, help="keep inputs with confidence below this")
    p.add_argument("--sample-reservoir", type=int, default=20, help="uniform samples kept per period")
    p.add_argument("--sample-budget-mb", type=float, default=50.0)
    args = p.parse_args(argv)
    if args.threads < 1 or args.poll_s <= 0 or args.telemetry_period_s <= 0 or args.telemetry_flush_s <= 0:
        p.error("need --threads >= 1 and positive --poll-s, --telemetry-period-s, --telemetry-flush-s")
    if args.sample_reservoir < 0 or not 0 <= args.sample_threshold <= 1:
        p.error("need --sample-reservoir >= 0 and --sample-threshold in 0..1")
    if args.delegate != XNNPACK and not os.path.isabs(args.delegate):
        p.error(f"--delegate {args.delegate!r}: use {XNNPACK!r} or an absolute path to a delegate library")
    pairs = [o.partition("=") for o in args.delegate_option]
    if any(not k or not sep for k, sep, _ in pairs) or (pairs and args.delegate == XNNPACK):
        p.error("--delegate-option takes KEY=VALUE, and only with an external --delegate library")
    args.delegate_options = {k: v for k, _, v in pairs}
    if not os.path.isdir(args.root):
        p.error(f"--root {args.root}: no such directory (the device's deploy root)")
    args.state = args.state or os.path.join(args.root, STATE)
    args.socket = os.path.join(args.state, "serve.sock") if args.socket is None else args.socket
    if args.http_port < 0 and not args.socket:
        p.error("nothing to listen on: give --http-port >= 0 or a --socket path")
    return args


def listen(args: argparse.Namespace) -> list[socketserver.BaseServer]:
    servers: list[socketserver.BaseServer] = []
    if args.http_port >= 0:
        servers.append(LocalHTTPServer(("127.0.0.1", args.http_port), Handler))
    if args.socket:
        Path(args.socket).unlink(missing_ok=True)  # a stale socket of a process before this one
        old = os.umask(0o117)  # rw for the owner and its group only
        try:
            servers.append(UnixHTTPServer(args.socket, Handler))
        finally:
            os.umask(old)
    return servers


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    interpreter_module()  # fail now, with the fix, if this python has no LiteRT
    state = Path(args.state)
    state.mkdir(parents=True, exist_ok=True)
    telemetry = Telemetry(state / "telemetry", args.telemetry_period_s, int(args.telemetry_budget_mb * MB))
    sampler = Sampler(state / "samples", args.sample_threshold, args.sample_reservoir,
                      int(args.sample_budget_mb * MB), args.telemetry_period_s, telemetry)
    service, stop = Service(args, telemetry), threading.Event()

    def on_hup(*_: Any) -> None:
        service.force = True
        service.wake.set()

    signal.signal(signal.SIGHUP, on_hup)  # first: SIGHUP's default action would kill a service still loading
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    service.reload(force=True)
    Handler.service, Handler.telemetry, Handler.sampler = service, telemetry, sampler
    Handler.max_body = int(args.max_body_mb * MB)
    servers = listen(args)
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in servers]
    threads.append(threading.Thread(target=service.watch, args=(stop,), daemon=True))
    for t in threads:
        t.start()
    port = servers[0].server_address[1] if args.http_port >= 0 else None
    write_atomic(state / "endpoint.json", json.dumps({"pid": os.getpid(), "http_port": port,
                                                      "socket": args.socket or None}).encode())
    log(f"listening on 127.0.0.1:{port} and {args.socket or 'no socket'}; pid {os.getpid()}")
    while not stop.wait(args.telemetry_flush_s):
        telemetry.flush()
    for s in servers:
        s.shutdown()
        s.server_close()
    service.wake.set()
    sampler.close()
    telemetry.flush(closing=True)
    if args.socket:
        Path(args.socket).unlink(missing_ok=True)
    log("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
