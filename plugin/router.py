"""Routing of /rt/ requests: the route type, path parameters, paging limits, and the one table
that turns exceptions into HTTP statuses.

Route modules (plugin/routes/) raise errors from orthanc_rt.errors (NotFound,
ValidationError, PlanRequestError, ...) or HttpError for answers of their own;
only `error_response_for` decides which status and body each becomes.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from redis.exceptions import RedisError
from sqlalchemy.exc import DataError, SQLAlchemyError

from orthanc_rt.errors import NotFound, PlanRequestError, ValidationError
from plugin.rest import HttpError, Request, Response, error_response, int_param
from plugin.roles import Access

log = logging.getLogger("orthanc_rt.plugin")

# What a path parameter may look like; openapi.py states these same patterns from here.
PARAM_PATTERNS = {"job_id": r"[A-Za-z0-9_.-]{1,64}", "instance_id": r"[0-9a-f-]{1,64}",
                  "measurement_id": r"[0-9]{1,9}", "study": r"[0-9A-Za-z.-]{1,64}",
                  "dose": r"[0-9A-Za-z.-]{1,64}", "workflow": r"[a-z0-9-]{1,32}",
                  "plan_id": r"[A-Za-z0-9_.-]{1,64}", "check_id": r"[A-Za-z0-9_.-]{1,64}"}
MAX_PAGE = 500  # rows of one JSON page
MAX_OFFSET = 10**9
INTERNAL_ERROR = "internal error in Orthanc-RT; see Orthanc's log"


@dataclass
class Route:
    method: str
    template: str  # "/rt/jobs/{job_id}", as in the OpenAPI description
    handler: Callable[..., Response]  # handler(request, **path parameters)
    permission: str  # see plugin/roles.py

    @property
    def pattern(self) -> re.Pattern[str]:
        parts = re.split(r"\{(\w+)\}", self.template)  # literal, name, literal, name, ..., literal
        return re.compile("".join(re.escape(part) if i % 2 == 0 else f"(?P<{part}>{PARAM_PATTERNS[part]})"
                                  for i, part in enumerate(parts)))


def page_params(query: dict[str, str], default_limit: int, max_limit: int = MAX_PAGE) -> tuple[int, int]:
    """The `limit` and `offset` query parameters of a list route."""
    return int_param(query, "limit", default_limit, 1, max_limit), int_param(query, "offset", 0, 0, MAX_OFFSET)


def page(items: list[Any], total: int, limit: int, offset: int, **extra: Any) -> dict[str, Any]:
    """The JSON body of one page of a list route."""
    return {"items": items, "total": total, "limit": limit, "offset": offset, **extra}


# The one exception -> HTTP status table, first match wins (DataError before its base SQLAlchemyError).
# `logged`: a fault of ours or of a service, written to Orthanc's log with its traceback.
_STATUS_TABLE: tuple[tuple[type[BaseException], Callable[[Any], Response], bool], ...] = (
    (HttpError, lambda e: error_response(e.status, e.message, **e.details), False),
    (ValidationError, lambda e: error_response(400, str(e), field=e.field), False),
    (PlanRequestError, lambda e: error_response(400, str(e)), False),
    (NotFound, lambda e: error_response(404, str(e)), False),
    (RedisError, lambda e: error_response(503, f"Redis is unavailable: {type(e).__name__}"), False),
    # The request's values do not fit the database (range, NUL, ...).
    (DataError, lambda e: error_response(400, f"a value does not fit the database: {str(e.orig)[:200]}"), False),
    (SQLAlchemyError, lambda e: error_response(503, f"database is unavailable: {type(e).__name__}"), True),
    # Anything else, OrthancError included (Orthanc refusing a call we make is ours to explain): 500.
)


def error_response_for(exc: BaseException, where: str) -> Response:
    """The answer to a request that raised `exc` (`where`: "METHOD /path", for the log)."""
    for kind, answer, logged in _STATUS_TABLE:
        if isinstance(exc, kind):
            if logged:
                log.error("%s on %s", type(exc).__name__, where, exc_info=exc)
            return answer(exc)
    log.error("internal error on %s", where, exc_info=exc)  # the plugin must answer, never take Orthanc down
    return error_response(500, INTERNAL_ERROR)


class Router:
    """Finds a request's route, checks the caller's permission, and answers."""

    def __init__(self, routes: Sequence[Route], access: Access | None = None):
        self.routes = list(routes)
        self.access = access or Access(None, orthanc_authentication=False)
        self._compiled = [(route, route.pattern) for route in self.routes]

    def handle(self, request: Request) -> Response:
        path = request.path.rstrip("/") or "/"
        allowed = []
        for route, pattern in self._compiled:
            match = pattern.fullmatch(path)
            if match is None:
                continue
            if route.method != request.method:
                allowed.append(route.method)
                continue
            decision = self.access.check(request.headers, route.permission)
            if not decision.allowed:
                return error_response(decision.status, decision.reason)
            request.user = decision.identity.user
            try:
                return route.handler(request, **match.groupdict())
            except Exception as exc:
                return error_response_for(exc, f"{request.method} {path}")
        if allowed:
            return error_response(405, f"{request.method} not allowed on {path}; use {', '.join(sorted(allowed))}",
                                  allowed=sorted(allowed))
        return error_response(404, f"no Orthanc-RT route {path}")
