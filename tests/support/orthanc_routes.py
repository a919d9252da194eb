"""Orthanc's own routes: every one the installed Orthanc documents, and one sample request per route family
(plugin/orthanc_access.py), tried with every role against a live Orthanc."""
from __future__ import annotations

import json
import re
import subprocess
import tempfile
from pathlib import Path

from orthanc_rt.ops.stack import ORTHANC_BINARY

FAKE = "0a1b2c3d-00000000-00000000-00000000-00000000"  # a well-formed Orthanc id no resource has

# Routes `Orthanc --openapi` leaves out (Debian's 1.10 omits most GETs) and those of the DICOMweb plugin
# and the Explorer: with the documented ones, every route this Orthanc serves.
UNDOCUMENTED = [
    "GET /", "GET /app/explorer.html", "GET /app/libs/jquery.min.js", "GET /favicon.ico", "GET /plugins",
    "GET /plugins/dicom-web", "GET /plugins/explorer.js", "GET /system", "GET /statistics", "GET /changes",
    "GET /jobs", "GET /tools/now", "GET /tools/now-local", "GET /tools/metrics-prometheus",
    *(f"GET /{level}" for level in ("patients", "studies", "series", "instances")),
    *(f"GET /{level}/{{id}}{tail}" for level in ("patients", "studies", "series", "instances")
      for tail in ("", "/attachments", "/metadata", "/module", "/statistics", "/instances", "/shared-tags")),
    "GET /instances/{id}/tags", "GET /instances/{id}/simplified-tags", "GET /instances/{id}/header",
    "GET /instances/{id}/frames", "GET /studies/{id}/series", "GET /patients/{id}/studies",
    "POST /instances/{id}/export",
    "GET /dicom-web/studies", "GET /dicom-web/series", "GET /dicom-web/instances", "GET /dicom-web/info",
    "GET /dicom-web/studies/{id}/series/{id}/metadata", "GET /dicom-web/studies/{id}/series/{id}/instances/{id}",
    "GET /dicom-web/studies/{id}/series/{id}/instances/{id}/frames/1", "GET /dicom-web/app/client/index.html",
    "GET /wado", "POST /dicom-web/studies", "POST /dicom-web/studies/{id}",
    "GET /dicom-web/servers", "GET /dicom-web/servers/{id}", "PUT /dicom-web/servers/{id}",
    "DELETE /dicom-web/servers/{id}", "POST /dicom-web/servers/{id}/stow", "POST /dicom-web/servers/{id}/get",
    "POST /dicom-web/servers/{id}/retrieve", "POST /dicom-web/servers/{id}/qido",
    "POST /dicom-web/servers/{id}/delete",
]


def documented_routes() -> list[str]:
    """`METHOD /path/{param}` for every route the installed Orthanc's OpenAPI description lists."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "openapi.json"
        subprocess.run([ORTHANC_BINARY, f"--openapi={out}"], cwd=tmp, check=True, capture_output=True, timeout=60)
        paths = json.loads(out.read_text())["paths"]
    return [f"{method.upper()} {path}" for path, ops in paths.items() for method in ops]


def sample_path(route_path: str) -> str:
    """A concrete path for a documented one: every {param} becomes a value no resource has."""
    return re.sub(r"\{[^}]+\}", lambda m: "1" if m.group(0) in ("{frame}", "{index}") else FAKE, route_path)


# One request per family (plugin/orthanc_access.FAMILIES, by name): method, path, JSON body or None.
# Ids are fake, so a role that is let through gets Orthanc's own 4xx and nothing changes; the attacker
# test (tests/integration/test_orthanc_access.py) uses real ones.
FAMILY_SAMPLES: dict[str, tuple[str, str, object]] = {
    "Orthanc Explorer and static files": ("GET", "/app/explorer.html", None),
    "system information and statistics": ("GET", "/statistics", None),
    "patients, studies, series, instances: read (tags, files, frames, renderings, ZIP)":
        ("GET", "/studies", None),
    "find and lookup": ("POST", "/tools/find", {"Level": "Study", "Query": {}}),
    "study downloads (ZIP archive, DICOMDIR media)": ("POST", f"/studies/{FAKE}/archive", {}),
    "attachment integrity check": ("POST", f"/instances/{FAKE}/attachments/dicom/verify-md5", {}),
    "Orthanc jobs: read": ("GET", "/jobs", None),
    "change and export logs: read": ("GET", "/changes", None),
    "tools and settings: read": ("GET", "/tools/generate-uid?level=study", None),
    "DICOMweb: QIDO-RS, WADO-RS, WADO-URI": ("GET", "/dicom-web/studies", None),
    "upload (REST, STOW-RS)": ("POST", "/instances", b"not dicom"),
    "create DICOM from JSON": ("POST", "/tools/create-dicom", {"Tags": {"Modality": "nope"}, "Parent": FAKE}),
    "delete an instance": ("DELETE", f"/instances/{FAKE}", None),
    "delete patients, studies, series": ("DELETE", f"/studies/{FAKE}", None),
    "modify, anonymize, merge, split, reconstruct": ("POST", f"/studies/{FAKE}/modify",
                                                     {"Replace": {"PatientName": "X"}, "KeepSource": False}),
    "metadata, attachments, protection: change": ("PUT", f"/patients/{FAKE}/protected", b"1"),
    "write to the server's file system": ("POST", f"/instances/{FAKE}/export", b"/tmp/x.dcm"),
    "send to modalities, peers, DICOMweb servers": ("POST", "/modalities/nowhere/store", [FAKE]),
    "DICOM network: echo, C-FIND, retrieve, query results, storage commitment":
        ("POST", "/tools/dicom-echo", {"AET": "X", "Host": "127.0.0.1", "Port": 1}),
    "modalities, peers, DICOMweb servers: read configuration": ("GET", "/modalities?expand", None),
    "modalities, peers, DICOMweb servers: change": ("DELETE", "/peers/nowhere", None),
    "Orthanc jobs: cancel, pause, resume, resubmit": ("POST", f"/jobs/{FAKE}/cancel", {}),
    "change and export logs: clear": ("DELETE", "/exports", None),
    "server settings (log levels, transfer syntaxes, encoding, metrics)":
        ("PUT", "/tools/log-level", b"not-a-level"),
    "reset, shutdown, Lua scripts": ("POST", "/tools/execute-script", b"print(1)"),
}

# Allowed samples Orthanc itself answers 403 in production (no Lua over REST, no writing to its disk),
# so for them "let through" cannot be told from the status.
REFUSED_BY_ORTHANC_ITSELF = {"reset, shutdown, Lua scripts", "write to the server's file system"}
