"""Talking to Orthanc's REST API from the plugin (in-process) or a worker (HTTP).

Both sides use the same small interface, so lookups written once
(`resources.py`) serve both.
"""
from __future__ import annotations

import json
from typing import Any, Protocol

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from orthanc_rt.errors import OrthancError, OrthancUnavailable
from orthanc_rt.settings import redact_url


class OrthancApi(Protocol):
    def get_bytes(self, path: str) -> bytes: ...
    def post_bytes(self, path: str, body: bytes, content_type: str = "application/json") -> bytes: ...
    def delete(self, path: str) -> None: ...


def get_json(api: OrthancApi, path: str) -> Any:
    return json.loads(api.get_bytes(path))


def post_json(api: OrthancApi, path: str, payload: Any) -> Any:
    return json.loads(api.post_bytes(path, json.dumps(payload).encode()))


def orthanc_session(auth: tuple[str, str] | None = None) -> requests.Session:
    """A requests session for Orthanc that resends a request whose connection dropped before any answer.

    Orthanc (1.10, civetweb) occasionally closes a connection without
    answering, most often under load; every call we make is safe to resend
    (GETs, DELETEs, and POSTs that store an instance by its UID or find
    resources), so a dropped connection is retried twice before it counts as
    Orthanc being unavailable.
    """
    session = requests.Session()
    session.auth = auth
    retry = Retry(total=3, connect=3, read=2, status=0, other=0, allowed_methods=None, backoff_factor=0.2,
                  raise_on_status=False)
    session.mount("http://", HTTPAdapter(max_retries=retry))
    session.mount("https://", HTTPAdapter(max_retries=retry))
    return session


class HttpOrthanc:
    """Orthanc over HTTP, for workers and tests. Credentials never appear in errors."""

    def __init__(self, base_url: str, username: str = "", password: str = "", timeout_s: float = 60.0):
        self.base_url = base_url.rstrip("/")
        self.shown_url = redact_url(self.base_url)  # what errors may say
        self.session = orthanc_session((username, password) if username else None)
        self.timeout_s = timeout_s

    def response(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """Orthanc's answer, whatever its status (OrthancUnavailable when none came): for callers that read
        error answers themselves (orthanc_rt.client reads /rt's JSON errors)."""
        url = f"{self.base_url}{path}"
        try:
            return self.session.request(method, url, timeout=self.timeout_s, **kwargs)
        except requests.ConnectionError as exc:
            raise OrthancUnavailable(f"Orthanc at {self.shown_url} is unreachable ({type(exc).__name__})") from None
        except requests.Timeout:
            raise OrthancUnavailable(f"Orthanc at {self.shown_url} did not answer {method} {path} in time") from None

    def _call(self, method: str, path: str, **kwargs: Any) -> bytes:
        response = self.response(method, path, **kwargs)
        if response.status_code >= 400:
            detail = response.text[:300]
            raise OrthancError(f"Orthanc {method} {path} -> HTTP {response.status_code}: {detail}",
                               status=response.status_code)
        return response.content

    def get_bytes(self, path: str) -> bytes:
        return self._call("GET", path)

    def post_bytes(self, path: str, body: bytes, content_type: str = "application/json") -> bytes:
        return self._call("POST", path, data=body, headers={"Content-Type": content_type})

    def delete(self, path: str) -> None:
        self._call("DELETE", path)
