"""The vectorised duplicate-spot check answers as OpenTPS' own (worker/planning/_spot_lookup.py)."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("opentps.core")

from opentps.core.data.plan import PlanProtonLayer  # noqa: E402

from worker.planning import _spot_lookup  # noqa: E402


def test_the_check_finds_the_same_spot_as_opentps_on_random_layers():
    rng = np.random.default_rng(7)
    for _ in range(20):
        layer = PlanProtonLayer(nominalEnergy=150.0)
        # A 5 mm grid with jitter, as spots are placed, plus exact and near duplicates to look up.
        grid = rng.integers(-20, 20, size=(rng.integers(1, 300), 2)) * 5.0 + rng.normal(0, 0.02, size=(1, 2))
        layer._x, layer._y = grid[:, 0].copy(), grid[:, 1].copy()
        layer._mu = np.ones(len(grid))
        probes = np.concatenate([grid[rng.integers(0, len(grid), 10)] + rng.uniform(-0.15, 0.15, (10, 2)),
                                 rng.uniform(-100, 100, (10, 2))])
        for x, y in probes:
            assert _spot_lookup._single_spot_check(layer, x, y) == _spot_lookup.OPENTPS_SINGLE_SPOT_CHECK(layer, x, y)


def test_installed_it_still_refuses_a_spot_where_one_is():
    _spot_lookup.install()
    layer = PlanProtonLayer(nominalEnergy=150.0)
    layer.appendSpot([0.0, 5.0], [0.0, 0.0], [1.0, 1.0])
    assert layer.spotDefinedInXY(5.05, 0.0) == (True, 1)
    with pytest.raises(ValueError, match="already exists"):
        layer.appendSpot(0.05, 0.0, 1.0)
