"""Who may do what: roles mapped from Orthanc users, one permission table for /rt/ and Orthanc's own API.

Orthanc itself does authentication (AuthenticationEnabled + RegisteredUsers):
a request reaching the plugin with a Basic "authorization" header has already
had its password checked. The 4.0 SDK passes no user name to callbacks, so the
name is read from that header. Authorization is ours: each /rt/ route names one
permission, each family of Orthanc's own routes too (plugin/orthanc_access.py),
and each role holds a set of permissions (one table, below).

With Orthanc's authentication on, every request needs a user with a role
(a registered user without one gets 403). With authentication off and no
"Roles" (development on localhost), nobody is checked and everyone acts as
`admin`. Roles with authentication off would trust an unchecked header, so
the plugin then refuses every request (503) until the configuration is fixed.
"""
from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Mapping

ADMIN, PHYSICIST, DOSIMETRIST, VIEWER = "admin", "physicist", "dosimetrist", "viewer"
WORKER = "worker"  # the workers' own Orthanc user: reads inputs, stores results, replaces its earlier results
ROLES = (ADMIN, PHYSICIST, DOSIMETRIST, VIEWER, WORKER)

# Permissions a route can require.
READ = "read"  # jobs, doses, health, the API description
COMPUTE = "compute"  # request and cancel dose computations
MEASURE = "measure"  # create/edit/delete measurements (issue 4 routes)
PLAN_APPROVE = "plan-approve"  # approve, delete plans
AUDIT = "audit"  # read and verify the audit trail
RECONCILE = "reconcile"  # scan Orthanc for plans without a dose job
CONFIGURE = "configure"  # Orthanc's settings, modalities and peers, jobs, reset, shutdown, Lua
# Permissions of Orthanc's own API (plugin/orthanc_access.py: which route family needs which). READ also
# covers the archive: Orthanc Explorer, QIDO-RS, WADO-RS/URI and study downloads.
STORE = "store"  # add instances: REST upload, STOW-RS, /tools/create-dicom
DELETE_INSTANCE = "delete-instance"  # DELETE /instances/{id} (a worker replacing its earlier result)
DELETE = "delete"  # delete patients, studies, series
MODIFY = "modify"  # modify, anonymize, merge, split, reconstruct; metadata and attachments
SEND = "send"  # anything that leaves the archive or talks to other DICOM nodes
PERMISSIONS = (READ, COMPUTE, MEASURE, PLAN_APPROVE, AUDIT, RECONCILE, CONFIGURE,
               STORE, DELETE_INSTANCE, DELETE, MODIFY, SEND)
# Not a permission a role holds: a route that asks for it serves every user Orthanc authenticated, with or without
# an Orthanc-RT role (GET /rt/metrics when OrthancRT.Metrics.RequireRole is false: a scraper's own login).
ANY_USER = "any-user"

GRANTS: dict[str, frozenset[str]] = {
    ADMIN: frozenset(PERMISSIONS),
    PHYSICIST: frozenset({READ, STORE, COMPUTE, MEASURE, PLAN_APPROVE, AUDIT, RECONCILE}),
    DOSIMETRIST: frozenset({READ, STORE, COMPUTE, MEASURE}),
    VIEWER: frozenset({READ}),
    WORKER: frozenset({READ, STORE, DELETE_INSTANCE}),
}


@dataclass(frozen=True)
class Identity:
    user: str
    role: str | None  # None: a known Orthanc user without an Orthanc-RT role


@dataclass(frozen=True)
class Decision:
    status: int  # 200 allowed, 401 no credentials, 403 not allowed, 503 misconfigured
    identity: Identity | None
    reason: str = ""

    @property
    def allowed(self) -> bool:
        return self.status == 200


class Access:
    """Decides every /rt/ request: `check(headers, permission)`."""

    def __init__(self, roles: Mapping[str, str] | None, *, orthanc_authentication: bool):
        roles = dict(roles or {})
        unknown = {u: r for u, r in roles.items() if r not in ROLES}
        if unknown:
            raise ValueError(f"OrthancRT.Roles: unknown roles {unknown}; expected one of {list(ROLES)}")
        self.roles = roles
        self.enforced = bool(roles) or orthanc_authentication
        # Roles without Orthanc's authentication would trust an unchecked header: refuse to serve.
        self.misconfigured = bool(roles) and not orthanc_authentication

    def check(self, headers: Mapping[str, str], permission: str) -> Decision:
        if permission not in PERMISSIONS and permission != ANY_USER:
            raise ValueError(f"unknown permission {permission!r}")
        user = basic_user(headers)
        if not self.enforced:
            return Decision(200, Identity(user or "anonymous", ADMIN))
        if self.misconfigured:
            return Decision(503, None, "Orthanc-RT has Roles configured but Orthanc's AuthenticationEnabled is "
                                       "off; refusing to serve until the configuration is fixed")
        if user is None:
            return Decision(401, None, "credentials required")
        role = self.roles.get(user)
        identity = Identity(user, role)
        if permission == ANY_USER:
            return Decision(200, identity)
        if role is None:
            return Decision(403, identity, f"user {user!r} has no Orthanc-RT role")
        if permission not in GRANTS[role]:
            return Decision(403, identity, f"role {role!r} does not allow {permission!r}")
        return Decision(200, identity)


def basic_user(headers: Mapping[str, str]) -> str | None:
    """The user name of an HTTP Basic 'authorization' header (Orthanc has checked the password)."""
    value = next((v for k, v in headers.items() if k.lower() == "authorization"), "")
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "basic" or not token:
        return None
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, _password = decoded.partition(":")
    return user if sep and user else None
