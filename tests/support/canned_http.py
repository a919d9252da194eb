"""A real HTTP server on a free loopback port that answers canned responses: for the client's unit tests
(orthanc_rt.client), which must see real status codes, bodies and connections, not a mocked session.

    with canned_server({("GET", "/rt/jobs/j1"): [job1, job2, job3]}) as server:
        RtClient(server.url).job("j1")          # job1, then job2, then job3 (repeated)
        server.requests                         # what was asked: method, path, query, body, authorization
"""
from __future__ import annotations

import json
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator
from urllib.parse import parse_qs, urlsplit


@dataclass
class Canned:
    """One answer: a JSON body (dict or list) or raw bytes, a status and a content type."""

    body: Any = None
    status: int = 200
    content_type: str = "application/json"


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, list[str]]
    body: Any
    authorization: str | None


@dataclass
class CannedServer:
    url: str
    answers: dict[tuple[str, str], list[Canned]]
    requests: list[Seen] = field(default_factory=list)

    def answer(self, method: str, path: str) -> Canned:
        queue = self.answers.get((method, path))
        if not queue:
            return Canned({"error": f"no canned answer for {method} {path}", "status": 404}, 404)
        return queue.pop(0) if len(queue) > 1 else queue[0]  # the last answer repeats


def _as_canned(value: Any) -> Canned:
    return value if isinstance(value, Canned) else Canned(value)


@contextmanager
def canned_server(answers: dict[tuple[str, str], Any]) -> Iterator[CannedServer]:
    """Serve `answers` ({(method, path): answer or [answers in turn]}) until the block ends."""
    table = {key: [_as_canned(v) for v in (value if isinstance(value, list) else [value])]
             for key, value in answers.items()}
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = raw
            with lock:
                server.requests.append(Seen(self.command, parts.path, parse_qs(parts.query), body,
                                            self.headers.get("Authorization")))
                canned = server.answer(self.command, parts.path)
            data = canned.body if isinstance(canned.body, bytes) else json.dumps(canned.body).encode()
            self.send_response(canned.status)
            self.send_header("Content-Type", canned.content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_DELETE = _serve

        def log_message(self, *args: Any) -> None:  # quiet: pytest shows what failed
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server = CannedServer(f"http://127.0.0.1:{httpd.server_address[1]}", table)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        httpd.shutdown()
        httpd.server_close()
