"""The only code that touches Orthanc's `orthanc` module: adapters and registration.

Everything it calls is plain Python (router.py, routes/, events.py,
maintenance.py). The module object is passed in, never imported here, so
this file is importable in tests too.
"""
from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from orthanc_rt.errors import OrthancError, ValidationError
from orthanc_rt.planning.auto_rules import shown_settings
from orthanc_rt.records import audit, db
from orthanc_rt.records.jobs import JobStore
from orthanc_rt.scheduling.params import auto_dose_params
from orthanc_rt.scheduling.queue import Dispatcher
from orthanc_rt.scheduling.triggers import Triggers
from orthanc_rt.settings import Settings
from plugin.archive_audit import ArchiveAuditWriter
from plugin.context import Context
from plugin.events import EventDispatcher, trigger_table
from plugin.maintenance import Maintenance
from plugin.orthanc_access import OrthancAccess
from plugin.rest import Request, Response, decode_query
from plugin.roles import Access
from plugin.router import Router, error_response_for
from plugin.routes import all_routes


class InProcessOrthanc:
    """OrthancApi over the plugin SDK's RestApi* calls (no HTTP, no credentials)."""

    def __init__(self, orthanc: Any):
        self._o = orthanc

    def get_bytes(self, path: str) -> bytes:
        return self._call(self._o.RestApiGet, path)

    def post_bytes(self, path: str, body: bytes, content_type: str = "application/json") -> bytes:
        return self._call(self._o.RestApiPost, path, body)

    def delete(self, path: str) -> None:
        self._call(self._o.RestApiDelete, path)

    def _call(self, fn: Any, path: str, *args: Any) -> bytes:
        try:
            return fn(path, *args)
        except self._o.OrthancException as exc:
            # The SDK only says "Unknown resource" etc.; map the common one to 404.
            text = str(exc)
            status = 404 if "Unknown resource" in text or "Inexistent" in text else 500
            raise OrthancError(f"Orthanc {path}: {text}", status=status) from None


class _OrthancLogHandler(logging.Handler):
    """Route Python logging into Orthanc's log."""

    def __init__(self, orthanc: Any):
        super().__init__()
        self._o = orthanc

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
            if record.levelno >= logging.ERROR:
                self._o.LogError(text)
            elif record.levelno >= logging.WARNING:
                self._o.LogWarning(text)
            else:
                self._o.LogInfo(text)
        except Exception:
            pass


def install(orthanc: Any) -> None:
    """Read the configuration, prepare the database, register routes and callbacks."""
    logger = logging.getLogger("orthanc_rt")
    logger.setLevel(logging.INFO)
    logger.addHandler(_OrthancLogHandler(orthanc))
    config = json.loads(orthanc.GetConfiguration())
    settings = Settings.from_orthanc_config(config)
    access = Access(config.get("OrthancRT", {}).get("Roles"),
                    orthanc_authentication=bool(config.get("AuthenticationEnabled", False)))
    if access.misconfigured:
        logger.error("Orthanc-RT: OrthancRT.Roles is set but AuthenticationEnabled is not true; "
                     "every /rt/ request will be refused (503)")
    elif access.enforced and not access.roles:
        logger.error("Orthanc-RT: AuthenticationEnabled without OrthancRT.Roles: every user is refused (403)")

    # Checked before anything records them: the audit of the configuration must show the settings in force,
    # whether the database answers now or only later.
    settings = _checked_auto_dose(settings)

    def prepare_database() -> None:
        db.upgrade(settings.database_url)
        audit.record(settings.database_url, "orthanc-rt-plugin", audit.CONFIG_LOADED, "", None,
                     {"settings": shown_settings(settings), "roles": access.roles})

    try:
        prepare_database()
        waiting_for_database = None
    except SQLAlchemyError as exc:  # Orthanc must start anyway, its API guarded by the role table below
        logger.error("Orthanc-RT: the database is unavailable (%s: %s): Orthanc-RT starts without it; its routes "
                     "answer 503 and triggers wait until it is back", type(exc).__name__, exc)
        waiting_for_database = prepare_database

    api_client = InProcessOrthanc(orthanc)
    dispatcher = Dispatcher(settings.redis_url, job_timeout_s=settings.dose_job_timeout_seconds,
                            plan_timeout_s=settings.plan_job_timeout_seconds)
    ctx = Context.create(api_client, settings, JobStore(settings.database_url), dispatcher)
    if ctx.check_config.problem:
        logger.error("Orthanc-RT: dose checks are off: %s", ctx.check_config.problem)
    if ctx.compute_from.problem:
        logger.error("Orthanc-RT: no upload starts Monte Carlo by itself: %s", ctx.compute_from.problem)
    router = Router(all_routes(ctx), access)
    triggers = Triggers(api_client, ctx.scheduler, settings, planner=ctx.submitter, check_config=ctx.check_config,
                        compute_from=ctx.compute_from)
    events = EventDispatcher(api_client, trigger_table(triggers))
    maintenance = Maintenance(api_client, ctx.scheduler, settings, triggers, events=events,
                              prepare=waiting_for_database)

    def rest(output: Any, uri: str, **request: Any) -> None:
        try:
            req = Request(method=request.get("method", "GET"), path=uri, query=decode_query(request.get("get")),
                          body=request.get("body") or b"", headers=dict(request.get("headers") or {}))
            response = router.handle(req)
        except Exception as exc:  # a request the SDK handed over in a shape we did not expect
            response = error_response_for(exc, f"REST glue {uri}")
        _answer(orthanc, output, response)

    change_names = {getattr(orthanc.ChangeType, n): n for n in dir(orthanc.ChangeType) if n.isupper()}

    def on_change(change_type: Any, level: Any, resource_id: str) -> None:
        name = change_names.get(change_type, "")
        if name == "ORTHANC_STARTED":
            maintenance.start()
        elif name == "ORTHANC_STOPPED":
            maintenance.stopped.set()
            archive_audit.stop()
        else:
            events.on_change(name, resource_id)

    # Orthanc's own API, DICOMweb and the Explorer under the same role table as /rt/ (plugin/orthanc_access.py).
    archive_audit = ArchiveAuditWriter(settings.database_url)
    archive_audit.start()
    orthanc.RegisterIncomingHttpRequestFilter(OrthancAccess(access, archive_audit.submit).allow)
    orthanc.RegisterRestCallback("/rt/(.*)", rest)
    ui_settings = json.dumps({"viewerUrl": settings.viewer_url})
    orthanc.ExtendOrthancExplorer(f"window.ORTHANC_RT = {ui_settings};\n"
                                  + (Path(__file__).parent / "explorer.js").read_text())
    orthanc.RegisterOnChangeCallback(on_change)
    logger.info("Orthanc-RT %s loaded: database %s, redis %s", _version(), settings.redacted()["database"],
                settings.redacted()["redis"])


def _answer(orthanc: Any, output: Any, response: Response) -> None:
    body = response.encoded()
    for name, value in response.headers.items():
        output.SetHttpHeader(name, value)
    if response.status == 200:
        output.AnswerBuffer(body, response.content_type)
    elif response.status == 405:  # the SDK insists on its own call for 405
        output.SendMethodNotAllowed(",".join(response.body.get("allowed", [])))
    elif response.status == 401:  # ... and for 401 (Orthanc 1.10)
        output.SendUnauthorized("Orthanc-RT")
    else:
        output.SetHttpHeader("Content-Type", response.content_type)
        # orthanc-python 4.0 takes the body as str plus its length (later versions: bytes only).
        text = body.decode("utf-8", errors="replace")
        output.SendHttpStatus(response.status, text, len(text.encode()))


def _version() -> str:
    import orthanc_rt

    return orthanc_rt.__version__


def _checked_auto_dose(settings: Settings) -> Settings:
    """The settings, with the automatic dose's LET/RBE options dropped (and said so) when they are invalid:
    every arriving plan would otherwise get a failed job."""
    try:
        auto_dose_params(settings.auto_dose)
        return settings
    except ValidationError as exc:
        logging.getLogger("orthanc_rt").error(
            "Orthanc-RT: automatic doses are computed without LET or RBE-weighted dose: %s", exc)
        return replace(settings, auto_dose=replace(settings.auto_dose, let=False, rbe_model=None,
                                                   alpha_beta_gy=None, alpha_beta_by_roi=()))
