"""The only code that touches Orthanc's `orthanc` module: adapters and registration.

Everything it calls is plain Python (api.py, events.py). The module object is
passed in, never imported here, so this file is importable in tests too.
"""
from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import Any, Callable

from orthanc_rt.planning.auto_rules import shown_settings
from orthanc_rt.records import audit, db
from orthanc_rt.records.jobs import JobStore
from orthanc_rt.scheduling.queue import Dispatcher
from orthanc_rt.scheduling.reconcile import reconcile
from orthanc_rt.scheduling.scheduler import Scheduler
from orthanc_rt.settings import Settings
from plugin.api import RtApi
from plugin.events import ArrivalHandler
from plugin.rest import Request, Response, error_response
from plugin.roles import Access

_MAINTENANCE_PERIOD_S = 10.0


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
        from orthanc_rt.pacs.client import OrthancError

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


class _Maintenance(threading.Thread):
    """Reconciles once at start-up, then pushes triggers recorded while Redis was down and fails
    waits that ran out."""

    def __init__(self, scheduler: Scheduler, startup: Callable[[], None] | None = None):
        super().__init__(name="orthanc-rt-maintenance", daemon=True)
        self.scheduler = scheduler
        self.startup = startup
        self.stopped = threading.Event()

    def run(self) -> None:
        log = logging.getLogger("orthanc_rt.plugin")
        if self.startup is not None:
            try:
                self.startup()
            except Exception as exc:  # Orthanc/Redis/DB trouble: the route can be called later
                log.warning("Orthanc-RT start-up reconcile failed: %s: %s", type(exc).__name__, exc)
        while not self.stopped.wait(_MAINTENANCE_PERIOD_S):
            try:
                self.scheduler.flush_pending()
                self.scheduler.repush_lost()
                self.scheduler.expire_waiting()
            except Exception as exc:  # Redis/DB down: try again next period
                log.warning("Orthanc-RT maintenance: %s: %s", type(exc).__name__, exc)


def install(orthanc: Any) -> None:
    """Read the configuration, prepare the database, register routes and callbacks."""
    logger = logging.getLogger("orthanc_rt")
    logger.setLevel(logging.INFO)
    logger.addHandler(_OrthancLogHandler(orthanc))
    config = json.loads(orthanc.GetConfiguration())
    settings = Settings.from_orthanc_config(config)
    db.upgrade(settings.database_url)
    access = Access(config.get("OrthancRT", {}).get("Roles"),
                    orthanc_authentication=bool(config.get("AuthenticationEnabled", False)))
    if access.misconfigured:
        logger.error("Orthanc-RT: OrthancRT.Roles is set but AuthenticationEnabled is not true; "
                     "every /rt/ request will be refused (503)")
    audit.record(settings.database_url, "orthanc-rt-plugin", audit.CONFIG_LOADED, "", None,
                 {"settings": shown_settings(settings), "roles": access.roles})

    api_client = InProcessOrthanc(orthanc)
    store = JobStore(settings.database_url)
    dispatcher = Dispatcher(settings.redis_url, job_timeout_s=settings.dose_job_timeout_seconds,
                            plan_timeout_s=settings.plan_job_timeout_seconds)
    api = RtApi(api_client, settings, store, dispatcher, access)
    handler = ArrivalHandler(api_client, api.scheduler, settings, planner=api.planning.submitter)

    def startup_reconcile() -> None:
        # Plans stored while Orthanc-RT was not running get their job (idempotent: see reconcile.py).
        if settings.auto_dose.enabled:
            reconcile(api_client, api.scheduler, settings.auto_dose, actor="startup-reconcile")

    maintenance = _Maintenance(api.scheduler, startup_reconcile)

    def rest(output: Any, uri: str, **request: Any) -> None:
        try:
            req = Request(method=request.get("method", "GET"), path=uri, query=dict(request.get("get") or {}),
                          body=request.get("body") or b"", headers=dict(request.get("headers") or {}))
            response = api.handle(req)
        except Exception:
            logger.exception("Orthanc-RT REST glue failed on %s", uri)
            response = error_response(500, "internal error in Orthanc-RT; see Orthanc's log")
        _answer(orthanc, output, response)

    change_names = {getattr(orthanc.ChangeType, n): n for n in dir(orthanc.ChangeType) if n.isupper()}

    def on_change(change_type: Any, level: Any, resource_id: str) -> None:
        name = change_names.get(change_type, "")
        if name == "ORTHANC_STARTED":
            maintenance.start()
        elif name == "ORTHANC_STOPPED":
            maintenance.stopped.set()
        else:
            handler.on_change(name, resource_id)

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
