"""Error scenarios of a robustness evaluation against real MCsquare (worker.engines.scenario_fanout.scenario_dose).

Setup errors move the beams, range errors scale the densities MCsquare sees;
these tests check what that must give in water: a +3 mm setup scenario is the
nominal dose moved by 3 mm, a +3 % range scenario moves R80 by 3 % of the range
(range is inversely proportional to density: the continuous-slowing-down range
in g/cm2 is a property of the material, ICRU Report 49 / NIST PSTAR), and the
voxel-wise minimum and maximum over scenarios bracket each of them.
1e5 primaries on 40 x 100 x 20 voxels: about 2 s per MCsquare run on 2 cores.
"""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("opentps.core")

from orthanc_rt.analysis.robustness import dose_envelope  # noqa: E402
from orthanc_rt.scheduling.robustness import Scenario  # noqa: E402
from tests.support.water_beams import depth_dose_along_y, distal_80, layer, single_beam_plan, water_ct  # noqa: E402
from worker.engines.scenario_fanout import scenario_dose  # noqa: E402

PRIMARIES = 100_000
SPOTS = [(x, z, 1.0) for x in (-4.0, 0.0, 4.0) for z in (-4.0, 0.0, 4.0)]


def _ct():
    # x: 1 mm voxels (a 3 mm shift is 3 voxels), y (beam direction): 1 mm, z: 2 mm.
    return water_ct((20, 100, 40), origin_mm=(-19.5, -49.5, -19.0), spacing_mm=(1.0, 1.0, 2.0))


@pytest.fixture(scope="module")
def doses(tmp_path_factory):
    ct = _ct()
    plan = single_beam_plan([layer(90.0, SPOTS)])
    scenarios = [Scenario(), Scenario((3.0, 0.0, 0.0)), Scenario(range_pct=3.0), Scenario(range_pct=-3.0)]
    return {s.name: scenario_dose(ct, plan, s, primaries=PRIMARIES, work_dir=tmp_path_factory.mktemp(s.name[:8]))
            for s in scenarios}


@pytest.mark.physics
def test_setup_scenario_is_the_nominal_dose_shifted(doses):
    nominal, shifted = (doses[name].dose_gy.astype(np.float64) for name in ("nominal", "x+3mm"))
    peak = nominal.max()
    moved = np.zeros_like(nominal)
    moved[:, :, 3:] = nominal[:, :, :-3]  # x is the last axis; 3 voxels of 1 mm
    region = (moved > 0.1 * peak) | (shifted > 0.1 * peak)
    after_shift = np.abs(shifted - moved)[region].mean() / peak
    unshifted = np.abs(shifted - nominal)[region].mean() / peak
    # Monte Carlo noise at 1e5 primaries: ~1-2 % of the peak per voxel; a 3 mm miss on the 4 mm lateral
    # gradient differs by tens of percent.
    assert after_shift < 0.03, f"mean |scenario - nominal shifted by 3 mm| = {after_shift:.3%} of the peak"
    assert unshifted > 3 * after_shift, (after_shift, unshifted)


@pytest.mark.physics
def test_range_scenario_moves_r80_by_the_range_error(doses):
    surface = _ct().origin_mm[1] - 0.5
    r80 = {name: distal_80(*depth_dose_along_y(doses[name])) - surface
           for name in ("nominal", "range+3%", "range-3%")}
    for name, sign in (("range+3%", 1), ("range-3%", -1)):
        expected = sign * 0.03 * r80["nominal"]  # about 1.9 mm of a 63 mm range
        assert abs((r80[name] - r80["nominal"]) - expected) < 0.4, (name, r80, expected)


@pytest.mark.physics
def test_min_and_max_bracket_every_scenario(doses):
    grids = list(doses.values())
    low, high = dose_envelope(grids)
    for grid in grids:
        assert np.all(low.dose_gy <= grid.dose_gy) and np.all(grid.dose_gy <= high.dose_gy)
    assert np.any(low.dose_gy < high.dose_gy)
