"""The errors Orthanc-RT raises and callers catch, in one place.

Each message is shown to users (HTTP answers, failed jobs): it names what was wrong.
Where an error becomes an HTTP status is decided by `plugin.router` alone.
"""
from __future__ import annotations


class ValidationError(ValueError):
    """A request field is missing or out of range; the message names the field."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field


class NotFound(LookupError):
    """What a request names does not exist (REST: 404); the message names it, e.g. "no job dose-1"."""


class OrthancError(RuntimeError):
    """Orthanc answered with an error; `status` is the HTTP status when known."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class OrthancUnavailable(OrthancError):
    """Orthanc could not be reached (a transient fault: retry later)."""


class InputNotReady(Exception):
    """An input is not (completely) in Orthanc yet; the message says which."""


class DicomInputError(ValueError):
    """A DICOM object is missing something we need or holds impossible values.

    The message names the object and the attribute (keyword and tag) so a
    physicist can find the problem in the file.
    """


class PlanRequestError(ValueError):
    """The request cannot be planned as given; the message says what to change (REST: 400)."""


class CccInputError(ValueError):
    """Inputs the engine cannot take (a flat grid, a bad spacing, an empty beamlet) or output it did not write."""


class SequencingError(ValueError):
    """The beamlets do not form a bixel grid an MLC can deliver; the message says why."""


class OverlayError(ValueError):
    """A rendering parameter is out of range; the message names it."""


class DoseEngineError(RuntimeError):
    """MCsquare could not produce a dose; the message says why (with its last output lines)."""


class BeamletFanoutError(DoseEngineError):
    """A beamlet part failed for good (after its retries), or a part's result is unusable."""


class PhotonEngineError(RuntimeError):
    """The CCC engine could not compute the beamlets; the message says why (with its last output lines)."""


class RtApiError(RuntimeError):
    """Orthanc-RT's REST API refused or failed a request: the one error `orthanc_rt.client` raises.

    `status` is the HTTP status of the answer (None when none came: see the subclasses), `message` the
    server's own words (the `error` of its JSON answer), `route` what was asked ("POST /rt/instances/.../dose").
    """

    def __init__(self, status: int | None, message: str, route: str):
        super().__init__(f"{route}: {message}" if status is None else f"{route} -> HTTP {status}: {message}")
        self.status = status
        self.message = message
        self.route = route


class RtApiUnreachable(RtApiError):
    """No answer at all: Orthanc refused the connection, or did not answer in time (`status` is None)."""

    def __init__(self, message: str, route: str):
        super().__init__(None, message, route)


class RtJobError(RtApiError):
    """A job that was waited for ended failed or cancelled, or did not end in time; `job` is its last state."""

    def __init__(self, message: str, route: str, job: dict):
        super().__init__(None, message, route)
        self.job = job
