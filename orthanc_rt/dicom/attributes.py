"""Reading attributes for messages a physicist can act on: keyword and tag, and what was wrong."""
from __future__ import annotations

from typing import Any

import numpy as np
from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset

from orthanc_rt.errors import DicomInputError

_MISSING = object()


def described(keyword: str) -> str:
    """`keyword` with its tag, e.g. "BeamMeterset (300A,0086)"."""
    tag = tag_for_keyword(keyword)
    if tag is None:
        return keyword
    return f"{keyword} ({tag >> 16:04X},{tag & 0xFFFF:04X})"


def is_present(ds: Dataset, keyword: str) -> bool:
    """Present with a value: an empty Type 2 element counts as absent."""
    if keyword not in ds:
        return False
    value = ds[keyword].value
    if value is None:
        return False
    return not (hasattr(value, "__len__") and len(value) == 0)


def required(ds: Dataset, keyword: str, where: str) -> Any:
    if not is_present(ds, keyword):
        raise DicomInputError(f"{where}: {described(keyword)} is missing")
    return ds[keyword].value


def number(ds: Dataset, keyword: str, where: str, default: Any = _MISSING) -> float:
    """A single numeric value; `default` when absent (an error when no default is given)."""
    if not is_present(ds, keyword):
        if default is _MISSING:
            raise DicomInputError(f"{where}: {described(keyword)} is missing")
        return default
    values = floats(ds, keyword, where)
    if values.size != 1:
        raise DicomInputError(f"{where}: {described(keyword)} should hold one value, not {values.size}")
    return float(values[0])


def floats(ds: Dataset, keyword: str, where: str) -> np.ndarray:
    """All values of a numeric attribute as a 1-D float array.

    pydicom gives a plain number for a single value and a list for several
    (a one-spot layer's ScanSpotMetersetWeights is a float): both end up here
    as arrays. Non-finite or unparseable values are refused.
    """
    value = required(ds, keyword, where)
    try:
        array = np.atleast_1d(np.asarray(value, dtype=np.float64)).ravel()
    except (TypeError, ValueError):
        raise DicomInputError(f"{where}: {described(keyword)} is not numeric: {value!r}") from None
    if not np.all(np.isfinite(array)):
        raise DicomInputError(f"{where}: {described(keyword)} holds non-finite values")
    return array
