"""/rt/metrics: Prometheus metrics of the installation (orthanc_rt.ops.metrics), for a scraper.

Whether it needs the `read` permission is `OrthancRT.Metrics.RequireRole` (default true); false lets any
user Orthanc authenticated scrape it, so a Prometheus login needs no Orthanc-RT role (and so no access to
patient data). The metrics carry no patient data either way.
"""
from __future__ import annotations

from functools import partial

from prometheus_client import CollectorRegistry

from orthanc_rt.ops import metrics
from plugin import roles
from plugin.context import Context
from plugin.rest import Request, Response
from plugin.router import Route


def routes(ctx: Context) -> list[Route]:
    registry = metrics.registry_for(ctx.store, ctx.checks, ctx.dispatcher)
    permission = roles.READ if ctx.settings.metrics_require_role else roles.ANY_USER
    return [Route("GET", "/rt/metrics", partial(_scrape, registry), permission)]


def _scrape(registry: CollectorRegistry, request: Request) -> Response:
    return Response(200, metrics.scrape(registry), content_type=metrics.CONTENT_TYPE)
