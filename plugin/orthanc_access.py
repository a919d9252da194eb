"""Orthanc's own HTTP API under the role table: every request Orthanc serves is sorted into a route family,
each family names one permission (plugin/roles.py), and the incoming-request filter (registered by
plugin/glue.py) lets through only what the caller's role holds.

Why a filter and not per-route callbacks: Orthanc's core routes, DICOMweb's and the Explorer's files are
not ours to wrap; orthanc-python's `RegisterIncomingHttpRequestFilter` sees every HTTP request after
Orthanc has checked the password and before any handler runs, and a refusal is answered 403 by Orthanc.
/rt/ requests pass through: plugin/router.py checks them route by route and answers 403 with a reason.

The table is default-deny: a path no family describes (a route a later Orthanc or another plugin adds)
needs CONFIGURE, so only an admin reaches it until someone classifies it here (and
tests/unit/test_orthanc_access.py fails for every route `Orthanc --openapi` lists that is not).

The filter runs with the GIL held on Orthanc's HTTP threads (orthanc-python 4.0), so a decision is a
few precompiled regular expressions and a dict lookup; the audit entry of an allowed state-changing
request is handed to a queue (plugin/archive_audit.py), never written on the request's thread.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping
from urllib.parse import unquote

from orthanc_rt.records import audit
from plugin import roles
from plugin.roles import Access

log = logging.getLogger("orthanc_rt.plugin")

GET, POST, PUT, DELETE = "GET", "POST", "PUT", "DELETE"
# orthanc-python 4.0 passes the method as OrthancPluginHttpMethod's number.
_METHOD_CODES = {1: GET, 2: POST, 3: PUT, 4: DELETE}

_LEVEL = r"(?:patients|studies|series|instances)"
_ID = r"[^/]+"
_ANY_TAIL = r"(?:/.*)?"


@dataclass(frozen=True)
class Family:
    """A group of Orthanc routes that need the same permission (one row of the role table in the docs)."""

    name: str
    permission: str
    routes: tuple[str, ...]  # "METHOD|METHOD regex", the regex fully matching the normalised path

    def matches(self, method: str, path: str) -> bool:
        return any(method in methods and pattern.fullmatch(path) for methods, pattern in _COMPILED[self.name])


def _family(name: str, permission: str, *routes: str) -> Family:
    return Family(name, permission, routes)


# First match wins; order matters only where routes overlap (a specific POST before a level-wide one).
FAMILIES: tuple[Family, ...] = (
    _family("Orthanc Explorer and static files", roles.READ,
            "GET /", "GET /app" + _ANY_TAIL, r"GET /favicon\.ico", "GET /plugins" + _ANY_TAIL),
    _family("system information and statistics", roles.READ, "GET /system", "GET /statistics"),
    _family("patients, studies, series, instances: read (tags, files, frames, renderings, ZIP)", roles.READ,
            "GET /" + _LEVEL + _ANY_TAIL),
    _family("find and lookup", roles.READ, "POST /tools/(?:find|lookup|bulk-content)"),
    _family("study downloads (ZIP archive, DICOMDIR media)", roles.READ,
            f"POST /{_LEVEL}/{_ID}/(?:archive|media)", "POST /tools/create-(?:archive|media|media-extended)"),
    _family("attachment integrity check", roles.READ, f"POST /{_LEVEL}/{_ID}/attachments/{_ID}/verify-md5"),
    _family("Orthanc jobs: read", roles.READ, "GET /jobs" + _ANY_TAIL),
    _family("change and export logs: read", roles.READ, "GET /changes", "GET /exports"),
    _family("tools and settings: read", roles.READ, "GET /tools" + _ANY_TAIL),
    _family("DICOMweb: QIDO-RS, WADO-RS, WADO-URI", roles.READ,
            "GET /dicom-web/(?:studies|series|instances)" + _ANY_TAIL, "GET /dicom-web/info", "GET /wado",
            "GET /dicom-web/app" + _ANY_TAIL),
    _family("upload (REST, STOW-RS)", roles.STORE, "POST /instances", f"POST /dicom-web/studies(?:/{_ID})?"),
    _family("create DICOM from JSON", roles.STORE, "POST /tools/create-dicom"),
    _family("delete an instance", roles.DELETE_INSTANCE, f"DELETE /instances/{_ID}"),
    _family("delete patients, studies, series", roles.DELETE,
            f"DELETE /(?:patients|studies|series)/{_ID}", "POST /tools/bulk-delete"),
    _family("modify, anonymize, merge, split, reconstruct", roles.MODIFY,
            f"POST /{_LEVEL}/{_ID}/(?:modify|anonymize|merge|split|reconstruct)",
            "POST /tools/(?:bulk-modify|bulk-anonymize|reconstruct|invalidate-tags)"),
    _family("metadata, attachments, protection: change", roles.MODIFY,
            f"PUT|DELETE /{_LEVEL}/{_ID}/(?:metadata|attachments)/{_ID}",
            f"POST /{_LEVEL}/{_ID}/attachments/{_ID}/(?:compress|uncompress)", f"PUT /patients/{_ID}/protected"),
    _family("write to the server's file system", roles.SEND, f"POST /instances/{_ID}/export"),
    _family("send to modalities, peers, DICOMweb servers", roles.SEND,
            f"POST /(?:modalities|peers)/{_ID}/(?:store|store-straight|move|storage-commitment)",
            f"POST /dicom-web/servers/{_ID}/(?:stow|get|retrieve|qido|delete)"),
    _family("DICOM network: echo, C-FIND, retrieve, query results, storage commitment", roles.SEND,
            f"POST /modalities/{_ID}/(?:echo|find|find-patient|find-study|find-series|find-instance"
            "|find-worklist|query)", "POST /tools/dicom-echo", "GET|POST|DELETE /queries" + _ANY_TAIL,
            "GET|POST /storage-commitment" + _ANY_TAIL),
    _family("modalities, peers, DICOMweb servers: read configuration", roles.SEND,
            "GET /(?:modalities|peers)" + _ANY_TAIL, "GET /dicom-web/servers" + _ANY_TAIL),
    _family("modalities, peers, DICOMweb servers: change", roles.CONFIGURE,
            f"PUT|DELETE /(?:modalities|peers)/{_ID}", f"PUT|DELETE /dicom-web/servers/{_ID}"),
    _family("Orthanc jobs: cancel, pause, resume, resubmit", roles.CONFIGURE,
            f"POST /jobs/{_ID}/(?:cancel|pause|resume|resubmit)"),
    _family("change and export logs: clear", roles.CONFIGURE, "DELETE /changes", "DELETE /exports"),
    _family("server settings (log levels, transfer syntaxes, encoding, metrics)", roles.CONFIGURE,
            "PUT /tools/[^/]+"),
    _family("reset, shutdown, Lua scripts", roles.CONFIGURE, "POST /tools/(?:reset|shutdown|execute-script)"),
)
# Anything else: a route this table does not know yet, so an admin's only.
UNLISTED = _family("any route not listed above", roles.CONFIGURE, "GET|POST|PUT|DELETE /.*")
ORTHANC_RT = "Orthanc-RT /rt/ routes (checked route by route)"


def _compile(route: str) -> tuple[frozenset[str], re.Pattern[str]]:
    methods, _, pattern = route.partition(" ")
    return frozenset(methods.split("|")), re.compile(pattern)


_COMPILED = {f.name: tuple(_compile(r) for r in f.routes) for f in (*FAMILIES, UNLISTED)}

# Allowed requests of these families change the archive or its configuration: each one is audited.
AUDITED_PERMISSIONS = frozenset({roles.DELETE_INSTANCE, roles.DELETE, roles.MODIFY, roles.SEND, roles.CONFIGURE})


def normalise(uri: str) -> str | None:
    """The path the table is matched against, or None for one that could mean another route.

    Orthanc decodes percent-escapes once and ignores empty segments ("/tools//reset/" is /tools/reset),
    so the same is done here, in lower case, so no spelling of a path reaches a handler the table did not
    match. A path that still holds "%", "." or ".." segments after decoding is refused outright.
    """
    path = unquote(uri.split("?", 1)[0])
    parts = [p for p in path.split("/") if p]
    if any(p in (".", "..") or "%" in p or "\\" in p for p in parts):
        return None
    return "/" + "/".join(parts).lower()


def family_of(method: str, path: str) -> Family:
    """The family of a normalised path: the first that matches, UNLISTED when none does."""
    for family in FAMILIES:
        if family.matches(method, path):
            return family
    return UNLISTED


def method_name(method: Any) -> str:
    """GET/POST/PUT/DELETE from orthanc-python's number (4.0), an enum member or a string."""
    if isinstance(method, str):
        return method.upper()
    try:
        return _METHOD_CODES.get(int(method), "UNKNOWN")
    except (TypeError, ValueError):
        return str(getattr(method, "name", method)).upper()


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    user: str
    family: str
    permission: str
    audit: bool = False  # allowed and state-changing: the caller records it


AuditSink = Callable[[str, str, str, dict[str, Any]], None]  # (actor, action, subject, details)


class OrthancAccess:
    """Decides each HTTP request Orthanc receives (`verdict`), and `allow` is the filter itself."""

    def __init__(self, access: Access, record_change: AuditSink | None = None):
        self.access = access
        self.record_change = record_change

    def verdict(self, method: Any, uri: str, headers: Mapping[str, str]) -> Verdict:
        name = method_name(method)
        path = normalise(uri)
        if path is None:
            return Verdict(False, "", "a path with dot segments or escapes", roles.CONFIGURE)
        if path == "/rt" or path.startswith("/rt/"):
            return Verdict(True, "", ORTHANC_RT, "")
        # Orthanc honours X-HTTP-Method-Override on POST: both methods must be allowed.
        override = next((v for k, v in headers.items() if k.lower() == "x-http-method-override"), "")
        methods = [name] + ([override.strip().upper()] if override else [])
        families = [family_of(m, path) for m in methods]
        for family in families:  # the refused one, else the effective method's
            decision = self.access.check(headers, family.permission)
            if not decision.allowed:
                break
        user = decision.identity.user if decision.identity else ""
        audited = decision.allowed and family.permission in AUDITED_PERMISSIONS and methods[-1] != GET
        return Verdict(decision.allowed, user, family.name, family.permission, audited)

    def allow(self, uri: str, **request: Any) -> bool:
        """The incoming-request filter: True lets Orthanc serve the request, False answers 403.

        Never raises (an exception would make Orthanc answer 500 and log a traceback per request): a
        request the filter cannot decide is refused.
        """
        try:
            headers = request.get("headers") or {}
            method = request.get("method")
            verdict = self.verdict(method, uri, headers)
            if not verdict.allowed:
                log.warning("refused %s %r to %r: needs %r (%s)", method_name(method), uri[:200],
                            verdict.user or "anonymous", verdict.permission, verdict.family)
            elif verdict.audit and self.record_change is not None:
                effective = next((v for k, v in headers.items() if k.lower() == "x-http-method-override"),
                                 method_name(method))
                details = {"method": effective.upper(), "path": uri[:1000], "family": verdict.family,
                           "ip": str(request.get("ip", "")), "outcome": "requested"}
                self.record_change(verdict.user or "anonymous", audit.ORTHANC_PREFIX + verdict.permission,
                                   uri[:128], details)
            return verdict.allowed
        except Exception:
            log.exception("the Orthanc access filter failed on %r; refusing the request", uri[:200])
            return False
