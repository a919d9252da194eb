"""Request and response values passed between Orthanc's glue and the route handlers."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


class HttpError(Exception):
    """Answer with `status` and a JSON body {"error": message} (4xx for the caller's mistakes)."""

    def __init__(self, status: int, message: str, **details: Any):
        super().__init__(message)
        self.status = status
        self.message = message
        self.details = details


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    user: str = "anonymous"  # set by RtApi.handle from the checked identity (plugin/roles.py)

    def json(self) -> dict[str, Any]:
        """The body as a JSON object; an empty body is {}."""
        if not self.body.strip():
            return {}
        if len(self.body) > 1_000_000:
            raise HttpError(413, "request body larger than 1 MB")
        try:
            value = json.loads(self.body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise HttpError(400, f"request body is not valid JSON: {exc}") from None
        if not isinstance(value, dict):
            raise HttpError(400, f"request body must be a JSON object, got {type(value).__name__}")
        return value


@dataclass
class Response:
    status: int = 200
    body: Any = None
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)

    def encoded(self) -> bytes:
        if isinstance(self.body, bytes):
            return self.body
        return json.dumps(self.body, indent=2, default=str).encode()


def error_response(status: int, message: str, **details: Any) -> Response:
    return Response(status=status, body={"error": message, "status": status, **details})
