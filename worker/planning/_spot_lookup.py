"""OpenTPS' spot placement without its quadratic duplicate check.

`PlanProtonLayer.appendSpot` asks `_singleSpotCheck` whether a spot already sits at (x, y) before adding it, and
that check walks the layer's spots in Python with two scalar `np.isclose` calls each: quadratic in the spots of a
layer. Placing the 6,945 spots of a prostate-sized plan took 24 s of the plan's building stage, of which the
check was nearly all (690,962 `isclose` calls, profiled with the pelvis phantom at PTV scale 1.32). `install`
replaces it with the same rule (|a - b| <= 0.1 + 1e-5 |b| on x and on y, the first match) over the arrays at once;
tests/unit/test_spot_lookup.py pins it to OpenTPS' own on random layers.
"""
from __future__ import annotations

import numpy as np
from opentps.core.data.plan import PlanProtonLayer

_TOLERANCE_MM = 0.1  # OpenTPS' atol; its rtol is numpy's default 1e-5
OPENTPS_SINGLE_SPOT_CHECK = PlanProtonLayer._singleSpotCheck


def _single_spot_check(layer: PlanProtonLayer, x: float, y: float) -> tuple[bool, int | None]:
    found = np.flatnonzero(np.isclose(x, layer._x, atol=_TOLERANCE_MM) & np.isclose(y, layer._y, atol=_TOLERANCE_MM))
    return (True, int(found[0])) if found.size else (False, None)


def install() -> None:
    """Use the vectorised check in every PlanProtonLayer of this process (idempotent)."""
    PlanProtonLayer._singleSpotCheck = _single_spot_check
