"""Request and response values passed between Orthanc's glue and the route handlers."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Sequence


class HttpError(Exception):
    """Answer with `status` and a JSON body {"error": message} (4xx for the caller's mistakes)."""

    def __init__(self, status: int, message: str, **details: Any):
        super().__init__(message)
        self.status = status
        self.message = message
        self.details = details


# Deeply nested JSON overflows the C stack of Orthanc's HTTP threads inside the json module
# (Orthanc dies, no RecursionError): measure the depth before parsing. Our bodies are flat.
MAX_JSON_DEPTH = 32


def json_depth(text: bytes) -> int:
    """Deepest nesting of [ and { outside strings (linear; the body is at most 1 MB)."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in text:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return deepest


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    user: str = "anonymous"  # set by Router.handle from the checked identity (plugin/roles.py)

    def json(self) -> dict[str, Any]:
        """The body as a JSON object; an empty body is {}."""
        if not self.body.strip():
            return {}
        if len(self.body) > 1_000_000:
            raise HttpError(413, "request body larger than 1 MB")
        if json_depth(self.body) > MAX_JSON_DEPTH:
            raise HttpError(400, f"request body nests deeper than {MAX_JSON_DEPTH} levels")
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
        # No indent: with one, json falls back to its pure-Python encoder, which took a third of a
        # 50-row /rt/jobs answer's time (bench/rest_latency.py).
        return json.dumps(self.body, default=str).encode()


def error_response(status: int, message: str, **details: Any) -> Response:
    return Response(status=status, body={"error": message, "status": status, **details})


def text_param(query: dict[str, str], name: str) -> str | None:
    """A short free-text query parameter, None when absent."""
    raw = query.get(name) or None
    if raw is not None and len(raw) > 128:
        raise HttpError(400, f"{name}: at most 128 characters")
    if raw is not None and any(ord(c) < 32 for c in raw):  # PostgreSQL refuses NUL in text
        raise HttpError(400, f"{name}: control characters are not allowed")
    return raw


def int_param(query: dict[str, str], name: str, default: int, low: int, high: int) -> int:
    """An integer query parameter within [low, high], `default` when absent."""
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise HttpError(400, f"{name}: must be an integer, got {raw[:40]!r}") from None
    if not low <= value <= high:
        raise HttpError(400, f"{name}: must be between {low} and {high}, got {value}")
    return value


def choice_param(query: dict[str, str], name: str, allowed: Sequence[str], noun: str,
                 listing: str = "expected one of") -> str | None:
    """A query parameter that must be one of `allowed`, None when absent; the error names `noun` and the choices."""
    raw = query.get(name) or None
    if raw and raw not in allowed:
        raise HttpError(400, f"{name}: unknown {noun} {raw!r}; {listing} {list(allowed)}")
    return raw
