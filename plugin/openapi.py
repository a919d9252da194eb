"""The OpenAPI 3 description of the /rt/ routes (plugin/routes/), written by hand.

tests/unit/test_openapi.py checks that every registered route is described
here and nothing else; path parameter patterns and page limits come from
plugin.router, where the routes use them. schemathesis runs it against a live plugin.
"""
from __future__ import annotations

from typing import Any

from orthanc_rt.planning import request as plan_request
from orthanc_rt.planning.goals import MAX_GOALS
from orthanc_rt.records import measurements as measurement_records
from orthanc_rt.records.checks import VERDICTS
from orthanc_rt.scheduling import kinds
from orthanc_rt.scheduling.params import (
    ALPHA_BETA_RANGE_GY,
    DEFAULT_ALPHA_BETA_GY,
    DISTANCE_MM_RANGE,
    DOSE_LEVEL_RANGE,
    DOSE_PERCENT_RANGE,
    LIMIT_PERCENT_RANGE,
    MAX_ROI_ALPHA_BETA,
    PRIMARIES_RANGE,
    RBE_CONVENTIONS,
    RBE_MODELS,
    THRESHOLD_PERCENT_RANGE,
)
from orthanc_rt.scheduling.robustness import (
    RANDOM_SCENARIOS_RANGE,
    RANGE_ERROR_RANGE_PCT,
    SCENARIO_SETS,
    SETUP_RANGE_MM,
)
from plugin.router import MAX_OFFSET, MAX_PAGE, PARAM_PATTERNS

_ERROR = {"$ref": "#/components/schemas/Error"}


def _path(name: str, description: str = "") -> dict[str, Any]:
    described = {"description": description} if description else {}
    return {"name": name, "in": "path", "required": True, **described,
            "schema": {"type": "string", "pattern": f"^{PARAM_PATTERNS[name]}$"}}


_JOB_ID = _path("job_id")
_INSTANCE_ID = _path("instance_id")
_MEASUREMENT_ID = _path("measurement_id")
_STUDY = _path("study", "StudyInstanceUID or Orthanc study id")
_DOSE = _path("dose", "RTDOSE Orthanc id (or SOPInstanceUID)")
_WORKFLOW = _path("workflow")
_PLAN_ID = _path("plan_id")
_CHECK_ID = _path("check_id")


def _q(name: str, schema: dict[str, Any], description: str = "") -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


_PAGE = [_q("limit", {"type": "integer", "minimum": 1, "maximum": MAX_PAGE}),
         _q("offset", {"type": "integer", "minimum": 0, "maximum": MAX_OFFSET})]


def _json(schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": schema or {"type": "object"}}}}


def _op(summary: str, permission: str, ok: str, *, params: list | None = None, body: dict | None = None,
        errors: tuple[int, ...] = ()) -> dict[str, Any]:
    responses: dict[str, Any] = {"200": {"description": ok, **_json()}}
    for status in (400, 401, 403, *errors):
        responses[str(status)] = {"description": _REASONS[status], **_json(_ERROR)}
    op: dict[str, Any] = {"summary": summary, "description": f"Role permission required: `{permission}`.",
                          "parameters": params or [], "responses": responses}
    if body is not None:
        op["requestBody"] = {"required": False, **_json(body)}
    return op


_MEASUREMENT_BODY = {
    "type": "object",
    "properties": {
        "type": {"type": "string", "enum": ["distance", "area", "angle", "volume", "hounsfield"]},
        "value": {"type": "number"}, "unit": {"type": "string"}, "label": {"type": "string"},
        "study_instance_uid": {"type": "string"}, "series_instance_uid": {"type": "string"},
        "sop_instance_uid": {"type": "string"}, "frame_number": {"type": "integer", "minimum": 1},
        "roi_name": {"type": "string"}, "details": {"type": "object"},
    },
}
_MEASUREMENT_FILTERS = [
    _q("study", {"type": "string", "maxLength": 128}), _q("series", {"type": "string", "maxLength": 64}),
    _q("roi", {"type": "string", "maxLength": 64}), _q("type", {"type": "string", "maxLength": 16}),
    _q("metric", {"type": "string", "maxLength": 32}),
    _q("source", {"type": "string", "enum": list(measurement_records.SOURCES)}),
    _q("dose", {"type": "string", "maxLength": 64}), _q("job", {"type": "string", "maxLength": 64}),
    _q("sort", {"type": "string", "maxLength": 32}), _q("format", {"type": "string", "enum": ["json", "csv"]}),
]

_REASONS = {400: "invalid request", 401: "no or wrong credentials", 403: "the user's role does not allow this",
            404: "not found", 405: "method not allowed", 409: "conflict (job already final, input still arriving, "
                                                            "or not a manual measurement)",
            422: "the stored DICOM cannot be used",
            413: "request body too large", 503: "Redis, the database or Orthanc unavailable"}

_OBJECTIVE = {"type": "object", "required": ["roi", "type", "dose_gy"], "properties": {
    "roi": {"type": "string", "maxLength": plan_request.MAX_ROI_NAME},
    "type": {"type": "string", "enum": ["DMin", "DMax", "DMean", "DUniform", "DVHMin", "DVHMax"]},
    "dose_gy": {"type": "number", "minimum": 0}, "weight": {"type": "number"},
    "volume_pct": {"type": "number", "minimum": 0, "maximum": 100}, "robust": {"type": "boolean"}}}
_PLAN_FIELDS = {
    "workflow": {"type": "string", "enum": ["proton-impt", "proton-robust", "photon-ccc"]},
    "target_roi": {"type": "string", "maxLength": plan_request.MAX_ROI_NAME},
    "prescription_gy": {"type": "number", "minimum": 0.1, "maximum": 100},
    "fractions": {"type": "integer", "minimum": 1, "maximum": 60},
    "beam_count": {"type": "integer", "minimum": 1, "maximum": 9},
    "gantry_angles_deg": {"type": "array", "items": {"type": "number"}, "maxItems": 9},
    "couch_angles_deg": {"type": "array", "items": {"type": "number"}, "maxItems": 9},
    "spot_spacing_mm": {"type": "number"}, "layer_spacing_mm": {"type": "number"},
    "target_margin_mm": {"type": "number"},
    "objectives": {"type": "array", "items": _OBJECTIVE, "maxItems": plan_request.MAX_OBJECTIVES},
    "robustness": {"type": "object", "properties": {"setup_mm": {"type": "number"}, "range_pct": {"type": "number"}}},
    "beamlet_primaries": {"type": "integer", "minimum": plan_request.MIN_PRIMARIES,
                          "maximum": plan_request.MAX_BEAMLET_PRIMARIES},
    "final_primaries": {"type": "integer", "minimum": plan_request.MIN_PRIMARIES,
                        "maximum": plan_request.MAX_FINAL_PRIMARIES},
    "optimizer": {"type": "string"}, "max_iterations": {"type": "integer", "minimum": 1, "maximum": 10000},
    "scoring_spacing_mm": {"type": ["number", "null"]}, "beamlet_spacing_mm": {"type": "number"},
    "optimization_grid_mm": {"type": ["number", "null"]}, "final_uncertainty_pct": {"type": ["number", "null"]},
    "protocol": {"type": ["string", "null"]},
    "goals": {"type": ["array", "null"], "items": {"type": "object", "required": ["roi", "metric"], "properties": {
        "roi": {"type": "string"}, "metric": {"type": "string"}, "min": {"type": "number"},
        "max": {"type": "number"}}}},
}
_PLAN_BODY = {"type": "object", "required": ["study", "target_roi", "prescription_gy"], "properties": {
    "study": {"type": "string", "description": "Orthanc study id or StudyInstanceUID"},
    "ct_series": {"type": "string"}, "structure_set": {"type": "string"}, **_PLAN_FIELDS}}
_BATCH_BODY = {"type": "object", "required": ["studies", "request"], "properties": {
    "studies": {"type": "array", "items": {"type": "string", "maxLength": 64}, "minItems": 1, "maxItems": 100},
    "request": {"type": "object", "required": ["target_roi", "prescription_gy"], "properties": _PLAN_FIELDS}}}
_PLAN_STATUSES = ["queued", "waiting-for-input", "running", "succeeded", "failed", "cancelled", "deleted", "pending"]

def _range(low_high: tuple[float, float], **extra: Any) -> dict[str, Any]:
    return {"type": "number", "minimum": low_high[0], "maximum": low_high[1], **extra}


_ROBUSTNESS_BODY = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "setup_error_mm": {**_range(SETUP_RANGE_MM), "description": "systematic setup error (default 3)"},
        "range_error_pct": {**_range(RANGE_ERROR_RANGE_PCT), "description": "range error in % (default 3.5)"},
        "scenarios": {"description": "\"reduced\" (21: 7 positions x 3 ranges, default), \"full\" (81) or "
                                     "{\"random\": n (1-100), \"seed\": s}",
                      "oneOf": [{"type": "string", "enum": list(SCENARIO_SETS)},
                                {"type": "object", "properties": {
                                    "random": {"type": "integer", "minimum": RANDOM_SCENARIOS_RANGE[0],
                                               "maximum": RANDOM_SCENARIOS_RANGE[1]},
                                    "seed": {"type": "integer", "minimum": 0}}, "required": ["random"]}]},
        "primaries": {"type": "integer", "minimum": PRIMARIES_RANGE[0], "maximum": PRIMARIES_RANGE[1],
                      "description": "per scenario"},
        "goals": {"type": "array", "maxItems": MAX_GOALS, "description": "\"CTV D95 >= 95 %\", {roi, metric, "
                                                                         "min and/or max, unit} or {roi, metric, op, "
                                                                         "value, unit}; default: target coverage",
                  "items": {"oneOf": [{"type": "string"}, {"type": "object"}]}},
        "protocol": {"type": "string", "description": "a protocol of OrthancRT.Robustness.Protocols"},
    },
}

_DOSE_BODY = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "primaries": {"type": "integer", "minimum": PRIMARIES_RANGE[0], "maximum": PRIMARIES_RANGE[1]},
        "scoring_spacing_mm": {"type": ["number", "null"], "minimum": 0.5, "maximum": 10},
        "wait_for_ct_seconds": {"type": "integer", "minimum": 0, "maximum": 604800},
        "restrict_to_body": {"type": "boolean", "description": "zero dose outside the patient (default true)"},
        "crop_grid": {"type": "boolean", "description": "store only the dose region (default true)"},
        "let": {"type": "boolean", "description": "also score LETd (keV/um) and store it as a Parametric Map, "
                                                  "with per-ROI LETd records (default false; proton plans only)"},
        "rbe_model": {"type": ["string", "null"], "enum": [*RBE_MODELS, None],
                      "description": "also store an RBE-weighted RTDOSE (DoseType EFFECTIVE); mcnamara and "
                                     "wedenberg need let: true"},
        "alpha_beta_gy": _range(ALPHA_BETA_RANGE_GY, description="(alpha/beta)x in Gy of the variable RBE models "
                                                                 f"(default {DEFAULT_ALPHA_BETA_GY:g})"),
        "alpha_beta_by_roi": {"type": "object", "maxProperties": MAX_ROI_ALPHA_BETA,
                              "additionalProperties": _range(ALPHA_BETA_RANGE_GY),
                              "description": "ROI name -> (alpha/beta)x in Gy, overriding alpha_beta_gy there"},
    },
}


_CHECK_BODY = {
    "type": "object",
    "properties": {
        "with": {"type": "string", "description": "another RTDOSE (Orthanc id or SOPInstanceUID): compare the two; "
                                                  "without it, the dose's plan is recomputed and checked"},
        "dose_percent": _range(DOSE_PERCENT_RANGE), "distance_mm": _range(DISTANCE_MM_RANGE),
        "low_dose_threshold_percent": _range(THRESHOLD_PERCENT_RANGE), "local": {"type": "boolean"},
        "also_report": {"type": "array", "maxItems": 4,
                        "items": {"description": "\"2%/2mm\" or [2, 2]"}},
        "pass_percent": _range(LIMIT_PERCENT_RANGE), "action_percent": _range(LIMIT_PERCENT_RANGE),
        "dose_level_warn_percent": _range(DOSE_LEVEL_RANGE), "dose_level_action_percent": _range(DOSE_LEVEL_RANGE),
        "rbe_convention": {"type": "string", "enum": list(RBE_CONVENTIONS)},
        "rbe_by_manufacturer": {"type": "object", "additionalProperties": {"type": "string",
                                                                           "enum": list(RBE_CONVENTIONS)}},
        "primaries": {"type": "integer", "minimum": PRIMARIES_RANGE[0], "maximum": PRIMARIES_RANGE[1]},
    },
}


def _metrics_op() -> dict[str, Any]:
    op = _op("Prometheus metrics: jobs by kind and state, queue lengths, run times, failures by reason, workers "
             "and their heartbeats, checks by verdict (plain text, exposition format 0.0.4)", "read",
             "the metrics", errors=(503,))
    op["description"] = ("Role permission required: `read`, unless `OrthancRT.Metrics.RequireRole` is false: "
                         "then any user Orthanc authenticated (or anyone, with authentication off).")
    op["responses"]["200"]["content"] = {"text/plain; version=0.0.4; charset=utf-8": {"schema": {"type": "string"}}}
    return op


def spec(version: str) -> dict[str, Any]:
    return {
        "openapi": "3.0.3",
        "info": {"title": "Orthanc-RT", "version": version,
                 "description": "Radiotherapy dose jobs inside Orthanc. Authentication is Orthanc's (HTTP Basic); "
                                "roles come from OrthancRT.Roles."},
        "components": {
            "securitySchemes": {"basic": {"type": "http", "scheme": "basic"}},
            "schemas": {"Error": {"type": "object", "required": ["error", "status"],
                                  "properties": {"error": {"type": "string"}, "status": {"type": "integer"}}}},
        },
        "security": [{"basic": []}],
        "paths": {
            "/rt/health": {"get": _op("Health of Orthanc, Redis, workers and the database", "read",
                                      "all parts healthy", errors=(503,))},
            "/rt/openapi.json": {"get": _op("This description", "read", "the OpenAPI document")},
            "/rt/jobs": {"get": _op("List jobs, newest first", "read", "a page of jobs", params=[
                _q("state", {"type": "string", "enum": ["queued", "waiting-for-input", "running", "succeeded",
                                                         "failed", "cancelled"]}),
                _q("kind", {"type": "string", "enum": list(kinds.NAMES)}),
                _q("study", {"type": "string", "maxLength": 128}, "StudyInstanceUID or Orthanc study id"), *_PAGE],
                errors=(503,))},
            "/rt/jobs/{job_id}": {
                "get": _op("A job with its history; `results_deleted` names results no longer in Orthanc", "read",
                           "the job", params=[_JOB_ID], errors=(404, 503)),
                "delete": _op("Cancel a job (kills its MCsquare)", "compute", "cancelled", params=[_JOB_ID],
                              errors=(404, 409, 503)),
            },
            "/rt/instances/{instance_id}/dose": {
                "post": _op("Request the dose of an RT Ion Plan (idempotent per plan and parameters)", "compute",
                            "the job (created or existing)", params=[_INSTANCE_ID], body=_DOSE_BODY,
                            errors=(404, 413, 503))},
            "/rt/instances/{instance_id}/analysis": {
                "post": _op("Analyse a stored RTDOSE with a structure set (DVH, metrics, HU)", "compute",
                            "the analysis job", params=[_INSTANCE_ID],
                            body={"type": "object", "properties": {"structure_set": {"type": "string"}}},
                            errors=(404, 413, 503))},
            "/rt/instances/{instance_id}/robustness": {
                "post": _op("Request a robustness evaluation of an RT Ion Plan: its dose in error scenarios "
                            "(fanned out over the workers), goals in every scenario and their worst case, the "
                            "voxel-wise minimum and maximum dose as RTDOSEs (idempotent per plan and parameters)",
                            "compute", "the job (created or existing), the scenarios' names and where the goals "
                            "come from", params=[_INSTANCE_ID], body=_ROBUSTNESS_BODY, errors=(404, 413, 503))},
            "/rt/instances/{instance_id}/robustness/{job_id}/dvh-bands": {
                "get": _op("DVH bands of a finished robustness evaluation: per ROI the nominal cumulative DVH and "
                           "the minimum and maximum over the scenarios", "read", "the bands",
                           params=[_INSTANCE_ID, _JOB_ID], errors=(404, 409, 503))},
            "/rt/instances/{instance_id}/robustness/{job_id}/dvh-bands.png": {
                "get": _op("The DVH bands as a PNG plot (nominal curve inside the shaded band)", "read",
                           "a PNG", params=[_INSTANCE_ID, _JOB_ID], errors=(404, 409, 503))},
            "/rt/measurements": {
                "get": _op("Measurement rows: filters, sorting, paging, CSV/JSON export", "read", "a page of rows",
                           params=[*_MEASUREMENT_FILTERS, *_PAGE], errors=(404, 503)),
                "post": _op("Record a manual measurement", "measure", "the row", body=_MEASUREMENT_BODY,
                            errors=(413, 503)),
            },
            "/rt/measurements/{measurement_id}": {
                "get": _op("One measurement", "read", "the row", params=[_MEASUREMENT_ID], errors=(404, 503)),
                "put": _op("Change a manual measurement", "measure", "the row", params=[_MEASUREMENT_ID],
                           body=_MEASUREMENT_BODY, errors=(404, 409, 413, 503)),
                "delete": _op("Delete a manual measurement", "measure", "deleted", params=[_MEASUREMENT_ID],
                              errors=(404, 409, 503)),
            },
            "/rt/studies/{study}/measurements/summary": {
                "get": _op("Per dose, structure set and ROI: the computed metrics", "read", "the summary",
                           params=[_STUDY], errors=(404, 503))},
            "/rt/doses/{dose}/dvh": {
                "get": _op("Cumulative DVH curves of an RTDOSE", "read", "the curves", params=[_DOSE],
                           errors=(404, 503))},
            "/rt/doses/{dose}/dvh.png": {
                "get": _op("The DVH plot", "read", "a PNG", params=[_DOSE], errors=(404, 503))},
            "/rt/doses/{dose}/dlvh": {
                "get": _op("Cumulative dose-LET volume histograms of an RTDOSE whose LETd was scored, per ROI",
                           "read", "the histograms", params=[_DOSE], errors=(404, 503))},
            "/rt/doses/{dose}/dlvh.png": {
                "get": _op("One ROI's dose-LET volume histogram as iso-volume lines", "read", "a PNG", params=[
                    _DOSE, _q("roi", {"type": "string", "maxLength": 64}, "the ROI's name")],
                    errors=(400, 404, 503))},
            "/rt/doses/{dose}/overlay.png": {
                "get": _op("The dose over its CT with isodose lines and structures", "read", "a PNG", params=[
                    _DOSE, _q("plane", {"type": "string", "enum": ["axial", "coronal", "sagittal"]}),
                    _q("slice", {"type": "integer", "minimum": 0, "maximum": 100000}),
                    _q("window", {"type": "string", "enum": ["soft-tissue", "lung", "bone"]}),
                    _q("levels", {"type": "string", "maxLength": 64}, "comma-separated percentages"),
                    _q("reference_gy", {"type": "number", "minimum": 0, "exclusiveMinimum": True})],
                    errors=(404, 409, 422, 503))},
            "/rt/doses/{dose}/compare": {
                "post": _op("Check a dose: against a recompute of its plan, or against another dose ('with'); "
                            "idempotent per inputs and parameters", "compute", "the check job (created: 201)",
                            params=[_DOSE], body=_CHECK_BODY, errors=(404, 413, 422, 503))},
            "/rt/checks": {"get": _op("Dose checks with their verdicts, newest first; CSV/JSON export", "read",
                                      "a page of checks", params=[
                _q("study", {"type": "string", "maxLength": 128}, "StudyInstanceUID or Orthanc study id"),
                _q("plan", {"type": "string", "maxLength": 64}, "the plan's SOPInstanceUID"),
                _q("verdict", {"type": "string", "enum": list(VERDICTS)}),
                _q("since", {"type": "string", "format": "date-time"}),
                _q("until", {"type": "string", "format": "date-time"}),
                _q("format", {"type": "string", "enum": ["json", "csv"]}), *_PAGE], errors=(404, 503))},
            "/rt/checks/{check_id}": {"get": _op("A check: verdict, pass rates, per-ROI table, provenance, its job",
                                                 "read", "the check", params=[_CHECK_ID], errors=(404, 503))},
            "/rt/checks/{check_id}/report.pdf": {"get": _op("A check's PDF report (also in the study as an "
                                                            "Encapsulated PDF)", "read", "the PDF",
                                                            params=[_CHECK_ID], errors=(404, 503))},
            "/rt/metrics": {"get": _metrics_op()},
            "/rt/kinds": {"get": _op("The job kinds with their queues (in the order workers take them), time limits "
                                     "and queue lengths", "read", "the kinds and queues", errors=(503,))},
            "/rt/workflows": {"get": _op("The planning workflows with parameters, defaults, units, limits and "
                                         "availability", "read", "the workflows")},
            "/rt/workflows/{workflow}": {"get": _op("One workflow", "read", "the workflow", params=[_WORKFLOW],
                                                    errors=(404,))},
            "/rt/plans": {
                "get": _op("Plans, newest first", "read", "a page of plans", params=[
                    _q("study", {"type": "string", "maxLength": 128}, "StudyInstanceUID or Orthanc study id"),
                    _q("status", {"type": "string", "enum": _PLAN_STATUSES}),
                    _q("workflow", {"type": "string", "enum": ["proton-dose", "proton-impt", "proton-robust",
                                                               "photon-ccc"]}), *_PAGE], errors=(503,)),
                "post": _op("Request a plan (201 new, 200 the same request existed)", "compute",
                            "the plan with its job", body=_PLAN_BODY, errors=(413, 503))},
            "/rt/plans/batch": {"post": _op("The same plan request for up to 100 studies, one job each", "compute",
                                            "per-study results", body=_BATCH_BODY, errors=(413, 503))},
            "/rt/plans/{plan_id}": {
                "get": _op("A plan: request, status, job, QA summary, RTPLAN/RTDOSE", "read", "the plan",
                           params=[_PLAN_ID], errors=(404, 503)),
                "delete": _op("Delete a plan (cancels its job; delete_results=true also removes its RTPLAN and "
                              "RTDOSE from Orthanc)", "plan-approve", "deleted",
                              params=[_PLAN_ID, _q("delete_results", {"type": "string", "enum": ["true", "false"]})],
                              errors=(404, 409, 503))},
            "/rt/studies/{study}/structure-sets": {
                "get": _op("A study's structure sets (ROIs, contour counts) and CT series, for plan requests",
                           "read", "structure sets and CT series", params=[_STUDY], errors=(404, 503))},
            "/rt/reconcile": {"post": _op("Queue dose jobs for ion plans in Orthanc that have none", "reconcile",
                                          "what was found and queued", errors=(503,))},
            "/rt/audit": {"get": _op("The audit trail, newest first", "audit", "a page of entries", params=[
                _q("actor", {"type": "string", "maxLength": 128}),
                _q("action", {"type": "string", "maxLength": 128}, "exact, or a prefix ending in '.'"),
                _q("subject", {"type": "string", "maxLength": 128}),
                _q("since", {"type": "string", "format": "date-time"}),
                _q("until", {"type": "string", "format": "date-time"}), *_PAGE], errors=(503,))},
            "/rt/audit/verify": {"get": _op("Check the audit trail's hash chain", "audit",
                                            "ok is false when an entry was edited or deleted", errors=(503,))},
        },
    }
