"""Real local receivers for notices: a loopback HTTP webhook and an SMTP server (stdlib), started by a test."""

from __future__ import annotations

import json
import threading
from collections.abc import Generator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@contextmanager
def webhook() -> Generator[tuple[str, list[dict]], None, None]:
    """(url, received JSON bodies) of an HTTP server on 127.0.0.1 that answers every POST with 200."""
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def smtp_server() -> Generator[tuple[int, list[tuple[str, list[str], str]]], None, None]:
    """(port, received (from, to, data)) of a plain SMTP server on 127.0.0.1 (stdlib smtpd, Python 3.11)."""
    import asyncore
    import smtpd

    received: list[tuple[str, list[str], str]] = []

    class Server(smtpd.SMTPServer):
        def process_message(self, peer, mailfrom, rcpttos, data, **kwargs):  # noqa: ANN001, ANN201
            received.append((mailfrom, list(rcpttos), data.decode() if isinstance(data, bytes) else data))

    server = Server(("127.0.0.1", 0), None, decode_data=False)
    port = server.socket.getsockname()[1]
    stop = threading.Event()
    thread = threading.Thread(target=lambda: [asyncore.loop(0.05, count=1) for _ in iter(stop.is_set, True)],
                              daemon=True)
    thread.start()
    try:
        yield port, received
    finally:
        stop.set()
        thread.join(5)
        server.close()
