"""/rt/workflows: the planning workflows, their parameters and availability."""
from __future__ import annotations

from orthanc_rt.errors import NotFound
from orthanc_rt.planning import workflows
from plugin import roles
from plugin.context import Context
from plugin.rest import Request, Response
from plugin.router import Route


def routes(ctx: Context) -> list[Route]:
    return [
        Route("GET", "/rt/workflows", _list, roles.READ),
        Route("GET", "/rt/workflows/{workflow}", _get, roles.READ),
    ]


def _list(request: Request) -> Response:
    return Response(200, {"workflows": [w.as_dict() for w in workflows.WORKFLOWS.values()]})


def _get(request: Request, workflow: str) -> Response:
    if workflow not in workflows.WORKFLOWS:
        raise NotFound(f"no workflow {workflow}; known: {', '.join(workflows.WORKFLOWS)}")
    return Response(200, workflows.WORKFLOWS[workflow].as_dict())
