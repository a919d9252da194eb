"""Request and response values passed between Orthanc's glue and the route handlers."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Mapping, Sequence
from urllib.parse import unquote_plus


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


# Integers longer than this are read as floats, as JavaScript clients read every number: no field of ours
# needs more, and Python refuses to convert integers of more than 4,300 digits (json.loads then raised a
# ValueError no field could be named in). A float beyond 1e308 is inf, which the validators refuse by name.
MAX_INT_DIGITS = 15


def _json_int(text: str) -> int | float:
    return int(text) if len(text.lstrip("-")) <= MAX_INT_DIGITS else float(text)


def check_text(value: Any, where: str = "") -> None:
    """HttpError 400 naming the first string (or key) of a parsed JSON value that is not valid Unicode.

    JSON's \ud800 escapes give lone surrogates, which no database or DICOM file can store."""
    if isinstance(value, str):
        if not _is_unicode(value):
            raise HttpError(400, f"{where or 'body'}: a lone surrogate (\\ud800-\\udfff) is not a character",
                            field=where)
    elif isinstance(value, dict):
        for key, item in value.items():
            path = f"{where}.{key}" if where else str(key)
            if not _is_unicode(key):
                raise HttpError(400, f"{where or 'body'}: a key holds a lone surrogate", field=where)
            check_text(item, path)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            check_text(item, f"{where}[{index}]")


def _is_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def decode_query(raw: Mapping[str, str] | None) -> dict[str, str]:
    """Query arguments as the client meant them: percent-encoded UTF-8, "+" for a space (what HTML forms,
    `requests`, `URLSearchParams` and curl's --data-urlencode send).

    orthanc-python 4.0 hands them over as they stood in the URL (`?roi=Parotid%20L` arrives as
    "Parotid%20L"): the glue decodes them here, once. Bytes that do not decode to UTF-8 are a 400 naming
    the argument."""
    decoded = {}
    for raw_name, raw_value in (raw or {}).items():
        name = _decoded(raw_name, raw_name[:40])
        decoded[name] = _decoded(raw_value, name[:40])
    return decoded


def _decoded(text: str, name: str) -> str:
    try:
        value = unquote_plus(text, encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        value = None
    if value is None or not _is_unicode(value):
        raise HttpError(400, f"{name}: not valid UTF-8 once percent-decoded", field=name)
    return value


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
            value = json.loads(self.body, parse_int=_json_int)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise HttpError(400, f"request body is not valid JSON: {exc}") from None
        if not isinstance(value, dict):
            raise HttpError(400, f"request body must be a JSON object, got {type(value).__name__}")
        check_text(value)
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
        raise HttpError(400, f"{name}: at most 128 characters", field=name)
    if raw is not None and any(ord(c) < 32 for c in raw):  # PostgreSQL refuses NUL in text
        raise HttpError(400, f"{name}: control characters are not allowed", field=name)
    return raw


def int_param(query: dict[str, str], name: str, default: int, low: int, high: int) -> int:
    """An integer query parameter within [low, high], `default` when absent."""
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise HttpError(400, f"{name}: must be an integer, got {raw[:40]!r}", field=name) from None
    if not low <= value <= high:
        raise HttpError(400, f"{name}: must be between {low} and {high}, got {value}", field=name)
    return value


def choice_param(query: dict[str, str], name: str, allowed: Sequence[str], noun: str,
                 listing: str = "expected one of") -> str | None:
    """A query parameter that must be one of `allowed`, None when absent; the error names `noun` and the choices."""
    raw = query.get(name) or None
    if raw and raw not in allowed:
        raise HttpError(400, f"{name}: unknown {noun} {raw[:40]!r}; {listing} {list(allowed)}", field=name)
    return raw


def time_param(query: dict[str, str], name: str) -> datetime | None:
    """An ISO 8601 date-time query parameter (UTC when it names no zone), None when absent."""
    raw = query.get(name)
    if not raw:
        return None
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise HttpError(400, f"{name}: expected an ISO 8601 date-time, got {raw[:40]!r}") from None
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
