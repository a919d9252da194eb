"""The /rt/ routes, one module per first path segment after /rt/.

Every module has `routes(ctx: Context) -> list[Route]`; no route module
imports another (what they share is in plugin.router, plugin.context and
orthanc_rt). Adding a resource is one module here plus one entry in
`RESOURCES`.
"""
from __future__ import annotations

from plugin.context import Context
from plugin.router import Route
from plugin.routes import (
    audit,
    checks,
    doses,
    instances,
    jobs,
    kinds,
    measurements,
    metrics,
    plans,
    studies,
    system,
    workflows,
)

# The modules other packages may import; a module whose name starts with _ is private.
__all__ = ["audit", "checks", "doses", "instances", "jobs", "kinds", "measurements", "metrics", "plans", "studies",
           "system", "workflows", "RESOURCES", "all_routes"]

RESOURCES = (system, jobs, instances, audit, measurements, studies, checks, doses, workflows, plans, kinds, metrics)


def all_routes(ctx: Context) -> list[Route]:
    """Every /rt/ route, in the order the router tries them."""
    return [route for resource in RESOURCES for route in resource.routes(ctx)]
