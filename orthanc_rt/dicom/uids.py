"""DICOM UIDs: derived from names when a result must keep its UID across retries, random otherwise.

Both use the "2.25" root (ITU-T X.667 / DICOM PS3.5 B.2), under which a UID
is "2.25." followed by the decimal form of a 128-bit number, so no
organisation root is needed. A derived UID is the first 128 bits of the
SHA-256 of its parts: the same parts give the same UID on every machine,
which is what lets a retried job replace its earlier result. This module is
the only UID source in the project.
"""
from __future__ import annotations

import hashlib
import json
import re
import uuid

# What Orthanc-RT writes as Manufacturer (0008,0070) of every object it builds. It marks the builder, not the
# maker: test phantoms and the demo build with it too; orthanc_rt.scheduling.origin tells results of jobs apart.
MANUFACTURER = "Orthanc-RT"
_ROOT = "2.25."
_VALID = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")
_MAX_LENGTH = 64


def derive_uid(*parts: str) -> str:
    """The UID named by `parts` (at least one string; their order and boundaries matter)."""
    if not parts:
        raise ValueError("derive_uid needs at least one part")
    for part in parts:
        if not isinstance(part, str):
            # str(3) == str("3") would silently make different callers collide.
            raise TypeError(f"derive_uid parts must be strings, not {type(part).__name__}: {part!r}")
    # JSON keeps part boundaries unambiguous: ("a", "bc") and ("ab", "c") differ.
    digest = hashlib.sha256(json.dumps(list(parts)).encode("utf-8")).digest()
    return _ROOT + str(int.from_bytes(digest[:16], "big"))


def new_uid() -> str:
    """A fresh random UID, for objects that need no stable identity."""
    return _ROOT + str(uuid.uuid4().int)


def is_valid_uid(value: str) -> bool:
    """Whether `value` is a syntactically valid DICOM UID (PS3.5 9.1)."""
    return isinstance(value, str) and 0 < len(value) <= _MAX_LENGTH and bool(_VALID.match(value))
