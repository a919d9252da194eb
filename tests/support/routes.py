"""Every /rt/ route with a sample path, and which roles may change state: the role table's expectations."""
from __future__ import annotations

from plugin import roles

# One sample request per route; tests/unit/test_openapi.py keeps this list complete.
SAMPLES = {
    ("GET", "/rt/health"): "/rt/health",
    ("GET", "/rt/openapi.json"): "/rt/openapi.json",
    ("GET", "/rt/jobs"): "/rt/jobs",
    ("GET", "/rt/jobs/{job_id}"): "/rt/jobs/dose-1",
    ("DELETE", "/rt/jobs/{job_id}"): "/rt/jobs/dose-1",
    ("POST", "/rt/instances/{instance_id}/dose"): "/rt/instances/0a-1b/dose",
    ("POST", "/rt/reconcile"): "/rt/reconcile",
    ("GET", "/rt/audit"): "/rt/audit",
    ("GET", "/rt/audit/verify"): "/rt/audit/verify",
    ("POST", "/rt/instances/{instance_id}/analysis"): "/rt/instances/0a-1b/analysis",
    ("GET", "/rt/measurements"): "/rt/measurements",
    ("POST", "/rt/measurements"): "/rt/measurements",
    ("GET", "/rt/measurements/{measurement_id}"): "/rt/measurements/1",
    ("PUT", "/rt/measurements/{measurement_id}"): "/rt/measurements/1",
    ("DELETE", "/rt/measurements/{measurement_id}"): "/rt/measurements/1",
    ("GET", "/rt/studies/{study}/measurements/summary"): "/rt/studies/1.2.3/measurements/summary",
    ("GET", "/rt/doses/{dose}/dvh"): "/rt/doses/1.2.3/dvh",
    ("GET", "/rt/doses/{dose}/dvh.png"): "/rt/doses/1.2.3/dvh.png",
    ("GET", "/rt/doses/{dose}/dlvh"): "/rt/doses/1.2.3/dlvh",
    ("GET", "/rt/doses/{dose}/dlvh.png"): "/rt/doses/1.2.3/dlvh.png",
    ("GET", "/rt/doses/{dose}/overlay.png"): "/rt/doses/0a-1b/overlay.png",
    ("GET", "/rt/kinds"): "/rt/kinds",
    ("GET", "/rt/workflows"): "/rt/workflows",
    ("GET", "/rt/workflows/{workflow}"): "/rt/workflows/proton-impt",
    ("POST", "/rt/plans"): "/rt/plans",
    ("GET", "/rt/plans"): "/rt/plans",
    ("POST", "/rt/plans/batch"): "/rt/plans/batch",
    ("GET", "/rt/plans/{plan_id}"): "/rt/plans/plan-1",
    ("DELETE", "/rt/plans/{plan_id}"): "/rt/plans/plan-1",
    ("GET", "/rt/studies/{study}/structure-sets"): "/rt/studies/1.2.3/structure-sets",
    ("POST", "/rt/doses/{dose}/compare"): "/rt/doses/0a-1b/compare",
    ("GET", "/rt/checks"): "/rt/checks",
    ("GET", "/rt/checks/{check_id}"): "/rt/checks/check-1",
    ("GET", "/rt/checks/{check_id}/report.pdf"): "/rt/checks/check-1/report.pdf",
    ("GET", "/rt/metrics"): "/rt/metrics",
    ("POST", "/rt/instances/{instance_id}/robustness"): "/rt/instances/0a-1b/robustness",
    ("GET", "/rt/instances/{instance_id}/robustness/{job_id}/dvh-bands"):
        "/rt/instances/0a-1b/robustness/r-1/dvh-bands",
    ("GET", "/rt/instances/{instance_id}/robustness/{job_id}/dvh-bands.png"):
        "/rt/instances/0a-1b/robustness/r-1/dvh-bands.png",
}

# The permission each route needs, stated independently of plugin/roles.py (tests/unit/test_roles.py and
# tests/integration/test_auth.py compare the router with it).
PERMISSION = {("GET", "/rt/health"): "read", ("GET", "/rt/openapi.json"): "read", ("GET", "/rt/jobs"): "read",
              ("GET", "/rt/jobs/{job_id}"): "read", ("DELETE", "/rt/jobs/{job_id}"): "compute",
              ("POST", "/rt/instances/{instance_id}/dose"): "compute", ("POST", "/rt/reconcile"): "reconcile",
              ("GET", "/rt/audit"): "audit", ("GET", "/rt/audit/verify"): "audit",
              ("POST", "/rt/instances/{instance_id}/analysis"): "compute",
              ("POST", "/rt/instances/{instance_id}/robustness"): "compute",
              ("GET", "/rt/instances/{instance_id}/robustness/{job_id}/dvh-bands"): "read",
              ("GET", "/rt/instances/{instance_id}/robustness/{job_id}/dvh-bands.png"): "read",
              ("GET", "/rt/measurements"): "read", ("POST", "/rt/measurements"): "measure",
              ("GET", "/rt/measurements/{measurement_id}"): "read",
              ("PUT", "/rt/measurements/{measurement_id}"): "measure",
              ("DELETE", "/rt/measurements/{measurement_id}"): "measure",
              ("GET", "/rt/studies/{study}/measurements/summary"): "read", ("GET", "/rt/doses/{dose}/dvh"): "read",
              ("GET", "/rt/doses/{dose}/dvh.png"): "read", ("GET", "/rt/doses/{dose}/overlay.png"): "read",
              ("GET", "/rt/doses/{dose}/dlvh"): "read", ("GET", "/rt/doses/{dose}/dlvh.png"): "read",
              ("GET", "/rt/kinds"): "read", ("GET", "/rt/workflows"): "read",
              ("GET", "/rt/workflows/{workflow}"): "read",
              ("POST", "/rt/plans"): "compute", ("GET", "/rt/plans"): "read", ("POST", "/rt/plans/batch"): "compute",
              ("GET", "/rt/plans/{plan_id}"): "read", ("DELETE", "/rt/plans/{plan_id}"): "plan-approve",
              ("GET", "/rt/studies/{study}/structure-sets"): "read",
              ("POST", "/rt/doses/{dose}/compare"): "compute", ("GET", "/rt/checks"): "read",
              ("GET", "/rt/checks/{check_id}"): "read", ("GET", "/rt/checks/{check_id}/report.pdf"): "read",
              ("GET", "/rt/metrics"): "read"}  # "any-user" with OrthancRT.Metrics.RequireRole false

STATE_CHANGING = {"compute": {"admin", "physicist", "dosimetrist"}, "reconcile": {"admin", "physicist"},
                  "plan-approve": {"admin", "physicist"},
                  "measure": {"admin", "physicist", "dosimetrist"},
                  "audit": {"admin", "physicist"}, "read": set(roles.ROLES)}


def make_router(orthanc, settings, store, dispatcher, access=None):
    """The plugin's router over the given Orthanc, settings, job store and dispatcher (as the glue builds it)."""
    from plugin.context import Context
    from plugin.router import Router
    from plugin.routes import all_routes

    return Router(all_routes(Context.create(orthanc, settings, store, dispatcher)), access)
