"""Validation of manual measurement bodies (POST/PUT /rt/measurements): types, units, limits, references.

Every error is a `ValidationError` naming the field, which the API answers
with 400.
"""
from __future__ import annotations

import json
import math
from typing import Any, Mapping

from orthanc_rt.dicom.uids import is_valid_uid
from orthanc_rt.errors import ValidationError

# type -> (unit, lowest, highest). Angles are what viewers draw (0-360 degrees); HU as CT stores them.
TYPES: dict[str, tuple[str, float, float]] = {
    "distance": ("mm", 0.0, 1e5),
    "area": ("mm2", 0.0, 1e10),
    "angle": ("deg", 0.0, 360.0),
    "volume": ("mm3", 0.0, 1e12),
    "hounsfield": ("HU", -2048.0, 65535.0),
}
_UNIT_ALIASES = {"mm²": "mm2", "mm^2": "mm2", "mm³": "mm3", "mm^3": "mm3", "degrees": "deg", "°": "deg",
                 "hu": "HU", "[hnsf'U]": "HU"}
_FIELDS = {"type", "value", "unit", "metric", "label", "study_instance_uid", "series_instance_uid",
           "sop_instance_uid", "frame_number", "roi_name", "details"}


def manual_fields(body: Mapping[str, Any], *, existing: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The row fields of a POST body, or of a PUT body merged over `existing` (what is stored)."""
    unknown = sorted(set(body) - _FIELDS)
    if unknown:
        raise ValidationError(unknown[0], f"unknown field; expected some of {sorted(_FIELDS)}")
    existing = dict(existing or {})
    if "type" in body and body["type"] != existing.get("type"):
        # A new type brings its own unit and default metric; the stored ones belonged to the old type.
        existing.pop("unit", None)
        if existing.get("metric") == existing.get("type"):
            existing.pop("metric", None)
    merged = {**existing, **body}
    kind = merged.get("type")
    if not isinstance(kind, str) or kind not in TYPES:
        raise ValidationError("type", f"must be one of {sorted(TYPES)}, got {kind!r:.40}")
    unit, low, high = TYPES[kind]
    value = merged.get("value")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not _finite(value):
        raise ValidationError("value", f"must be a finite number, got {type(value).__name__} {value!r:.40}")
    if not low <= value <= high:
        raise ValidationError("value", f"a {kind} must be between {low:g} and {high:g} {unit}, got {value:g}")
    given_unit = merged.get("unit") or unit
    if _UNIT_ALIASES.get(str(given_unit), given_unit) != unit:
        raise ValidationError("unit", f"a {kind} is recorded in {unit}, got {given_unit!r:.20}")
    fields: dict[str, Any] = {"type": kind, "value": float(value), "unit": unit,
                              "metric": _text(merged, "metric", 32) or kind,
                              "label": _text(merged, "label", 128), "roi_name": _text(merged, "roi_name", 64)}
    study = merged.get("study_instance_uid")
    if not isinstance(study, str) or not is_valid_uid(study):
        raise ValidationError("study_instance_uid", f"a valid DICOM UID is required, got {study!r:.70}")
    fields["study_instance_uid"] = study
    for name in ("series_instance_uid", "sop_instance_uid"):
        uid = merged.get(name) or ""
        if uid and (not isinstance(uid, str) or not is_valid_uid(uid)):
            raise ValidationError(name, f"must be a valid DICOM UID, got {uid!r:.70}")
        fields[name] = uid
    if fields["sop_instance_uid"] and not fields["series_instance_uid"]:
        raise ValidationError("series_instance_uid", "required when sop_instance_uid is given")
    frame = merged.get("frame_number")
    if frame is not None and (isinstance(frame, bool) or not isinstance(frame, int) or not 1 <= frame <= 1_000_000):
        raise ValidationError("frame_number", f"must be a whole number from 1 to 1000000, got {frame!r:.20}")
    if frame is not None and not fields["sop_instance_uid"]:
        raise ValidationError("sop_instance_uid", "required when frame_number is given")
    fields["frame_number"] = frame
    details = merged.get("details")
    details = {} if details is None else details
    if not isinstance(details, dict) or len(str(details)) > 10_000 or "\\x00" in repr(details):
        raise ValidationError("details", "must be a JSON object of at most 10 kB, without NUL characters")
    try:
        json.dumps(details, allow_nan=False)  # PostgreSQL's JSON has no NaN or Infinity
    except ValueError:
        raise ValidationError("details", "numbers must be finite (no NaN or Infinity)") from None
    fields["details"] = details
    return fields


def _finite(value: int | float) -> bool:
    try:
        return math.isfinite(float(value))
    except OverflowError:  # an integer beyond float range
        return False


def _text(body: Mapping[str, Any], name: str, limit: int) -> str:
    value = body.get(name) or ""
    if not isinstance(value, str):
        raise ValidationError(name, f"must be a string, got {type(value).__name__}")
    if len(value) > limit:
        raise ValidationError(name, f"at most {limit} characters, got {len(value)}")
    if "\x00" in value:
        raise ValidationError(name, "must not contain NUL characters")
    return value
