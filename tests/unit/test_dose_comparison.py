"""The verdict rule and the dose-difference statistics of orthanc_rt.analysis.dose_comparison, on made-up gamma
maps (the gamma index itself: tests/unit/test_gamma.py and the pymedphys oracle)."""
from __future__ import annotations

import numpy as np
import pytest

from orthanc_rt.analysis.dose_comparison import judge
from orthanc_rt.analysis.gamma import GammaCriteria, GammaMap
from orthanc_rt.scheduling.params import CheckParams


def _map(rate: float) -> GammaMap:
    return GammaMap(criteria=GammaCriteria(), gamma=np.zeros((1, 1, 1), np.float32), evaluated_points=1000,
                    pass_rate_percent=rate)


@pytest.mark.parametrize("rate, ratio, verdict, first", [
    (99.0, 1.001, "pass", "gamma"), (99.0, 1.03, "warn", "median"), (99.0, 1.05, "fail", "median"),
    (99.0, 0.95, "fail", "median"), (92.0, 1.0, "warn", "gamma"), (85.0, 1.0, "fail", "gamma"),
    (85.0, 1.05, "fail", "gamma"), (95.0, 1.02, "pass", "gamma"), (89.99, 1.041, "fail", "gamma"),
])
def test_the_verdict_is_the_worse_of_gamma_and_dose_level(rate, ratio, verdict, first):
    found, reason = judge(_map(rate), CheckParams(), ratio)
    assert found == verdict and reason.startswith(first), reason
    assert "gamma 3%/2mm" in reason and "median dose ratio" in reason


def test_an_rbe_factor_is_named_and_a_missing_ratio_leaves_gamma_alone():
    assert judge(_map(40.0), CheckParams(), 1.1)[1].endswith("an RBE 1.1 convention mismatch?")
    assert judge(_map(99.0), CheckParams(), None) == ("pass", "gamma 3%/2mm pass rate 99.0 % over 1000 points "
                                                                 "(>= 95 %)")
