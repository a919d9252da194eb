"""gamma_3d against pymedphys.gamma (the oracle, in .venv-oracle) on smooth proton-like doses.

The reference is an SOBP with lateral penumbrae (60 x 60 x 40 voxels at
2.5 / 2.5 / 3 mm, anisotropic on purpose); the evaluated doses are that dose
with 1 % and 2 % Poisson-like noise, scaled by +3 %, shifted 1.5 mm
laterally (computed analytically, not resampled), and all of these at once. pymedphys is configured as
orthanc_rt.analysis.gamma says: normalised to the reference maximum, lower
cutoff = the threshold, interp_fraction 10, max_gamma 2. Pass rates must agree
within 0.1 percentage point (the issue's requirement), and since the search is
the same, so must the maps, point by point, to float32 rounding.
"""
from __future__ import annotations

import os

import numpy as np
import pytest

from orthanc_rt.analysis.gamma import GammaCriteria, gamma_3d
from tests.support.oracle import oracle_python, pymedphys_gamma, sobp_dose, with_noise

SHAPE = (40, 60, 60)  # [z, y, x]
SPACING = (2.5, 2.5, 3.0)  # (x, y, z) mm
REFERENCE = sobp_dose(SHAPE, SPACING)
EVALUATED = {
    "noise 1 %": with_noise(REFERENCE, 1.0, seed=1),
    "noise 2 %": with_noise(REFERENCE, 2.0, seed=2),
    "scaled +3 %": REFERENCE * 1.03,
    "shifted 1.5 mm": sobp_dose(SHAPE, SPACING, shift_mm=(1.5, 0.0, 0.0)),
    # A recompute that misses by a little of everything: the pass rates land between 80 and 95 %.
    "noise 2 %, +2 %, shifted (1.5, 0, 3) mm": with_noise(1.02 * sobp_dose(SHAPE, SPACING, shift_mm=(1.5, 0.0, 3.0)),
                                                           2.0, seed=3),
}
CRITERIA = [GammaCriteria(3, 2), GammaCriteria(2, 2), GammaCriteria(3, 3), GammaCriteria(3, 2, local=True),
            GammaCriteria(2, 2, local=True)]
# A uniform +3 % under a 3 % local criterion puts every point exactly at gamma = 1 (a tie float rounding
# decides, in either implementation): not a meaningful comparison.
SKIPPED = {("scaled +3 %", "3%/2mm local")}
CASES = [(name, c) for name in EVALUATED for c in CRITERIA if (name, c.name) not in SKIPPED]


@pytest.fixture(scope="module")
def oracle(tmp_path_factory) -> dict[str, dict[str, tuple[dict, np.ndarray]]]:
    python = oracle_python()
    if python is None:
        if os.environ.get("ORTHANC_RT_REQUIRE_ORACLE") == "1":
            pytest.fail("oracle virtualenv missing: run scripts/install.sh --dev")
        pytest.skip("no .venv-oracle with pymedphys (scripts/install.sh --dev creates it)")
    out = {}
    for name, evaluated in EVALUATED.items():
        criteria = [c for c in CRITERIA if (name, c.name) not in SKIPPED]
        result, maps = pymedphys_gamma(python, REFERENCE, evaluated, SPACING, criteria,
                                       tmp_path_factory.mktemp("gamma"))
        assert result["oracle"] == "pymedphys 0.41.0"
        out[name] = {c.name: (row, gamma) for c, row, gamma in zip(criteria, result["results"], maps)}
    return out


@pytest.mark.parametrize(("name", "criteria"), CASES, ids=[f"{n}-{c.name}" for n, c in CASES])
def test_pass_rate_and_map_match_pymedphys(oracle, name, criteria):
    theirs, their_map = oracle[name][criteria.name]
    ours = gamma_3d(REFERENCE, EVALUATED[name], SPACING, criteria)
    assert ours.evaluated_points == theirs["evaluated_points"]
    assert abs(ours.pass_rate_percent - theirs["pass_rate_percent"]) <= 0.1, (
        ours.pass_rate_percent, theirs["pass_rate_percent"])
    assert np.array_equal(np.isnan(ours.gamma), np.isnan(their_map))
    assert np.nanmax(np.abs(ours.gamma - their_map)) <= 1e-5


def test_the_cases_span_passing_and_failing(oracle):
    """The comparison means something only if pymedphys' pass rates are not all 100 %."""
    rates = [row["pass_rate_percent"] for by_criteria in oracle.values() for row, _ in by_criteria.values()]
    assert min(rates) < 70 and max(rates) == 100 and sum(50 < r < 99.5 for r in rates) >= 5, rates
