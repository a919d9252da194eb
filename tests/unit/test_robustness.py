"""Robustness requests (scenario sets, goals, limits) and the evaluation's numbers on synthetic doses (goals in
every scenario: test_goals)."""
from __future__ import annotations

import numpy as np
import pytest

from orthanc_rt.analysis.robustness import default_goals, dose_envelope, dvh_bands
from orthanc_rt.dicom.models import DoseGrid
from orthanc_rt.errors import ValidationError
from orthanc_rt.planning.goals import Goal
from orthanc_rt.scheduling.robustness import Scenario, robustness_params, scenario_set
from tests.support.cases import scenario_doses

LIMITS = dict(primaries_range=(1000, 10**9), default_primaries=10**6)


def test_reduced_set_is_21_scenarios_nominal_first_named_by_shift_and_range():
    names = [s.name for s in scenario_set("reduced", 3.0, 3.5)]
    assert len(names) == 21 and names[0] == "nominal" and len(set(names)) == 21
    assert {"x+3mm", "z-3mm", "range+3.5%", "range-3.5%", "y-3mm range+3.5%"} <= set(names)


def test_full_set_and_zero_errors_list_each_scenario_once():
    assert len(scenario_set("full", 3.0, 3.5)) == 81
    assert [s.name for s in scenario_set("reduced", 3.0, 0.0)] == ["nominal", "x+3mm", "x-3mm", "y+3mm", "y-3mm",
                                                                   "z+3mm", "z-3mm"]
    assert scenario_set("reduced", 0.0, 0.0) == [Scenario()]


def test_random_set_is_reproducible_from_its_seed():
    first, again, other = (scenario_set({"random": 5, "seed": seed}, 3.0, 3.5) for seed in (4, 4, 5))
    assert len(first) == 6 and first[0].nominal and first == again and first != other


@pytest.mark.parametrize("body, field", [
    ({"setup_error_mm": 10.5}, "setup_error_mm"), ({"range_error_pct": 11}, "range_error_pct"),
    ({"setup_error_mm": "3"}, "setup_error_mm"), ({"scenarios": {"random": 0}}, "scenarios.random"),
    ({"scenarios": {"random": 2.5}}, "scenarios.random"), ({"scenarios": {"random": 3, "seed": -1}}, "scenarios.seed"),
    ({"scenarios": {"random": 3, "n": 1}}, "scenarios"), ({"scenarios": 21}, "scenarios"),
    ({"goals": []}, "goals"), ({"goals": ["CTV D95 >= 95 Gray"]}, "goals[0]"),
    ({"goals": [{"roi": "CTV", "metric": "V70Gy", "op": ">=", "value": 95, "unit": "Gy"}]}, "goals[0]"),
    ({"goals": ["CTV D95 >= 95 %"], "protocol": "p"}, "protocol"), ({"protocol": "p"}, "protocol"),
])
def test_bad_fields_are_named(body, field):
    with pytest.raises(ValidationError) as caught:
        robustness_params(body, {}, **LIMITS)
    assert caught.value.field == field


def test_goals_from_request_protocol_or_default():
    assert robustness_params({"goals": ["CTV D95 >= 95 %"]}, {}, **LIMITS).goals_from == "request"
    params = robustness_params({"protocol": "prostate"}, {"Protocols": {"prostate": [
        "CTV D95 >= 95 %", "Rectum V70Gy <= 15 %", "Bladder V70Gy <= 25 %"]}}, **LIMITS)
    assert params.goals_from == "protocol prostate" and params.goals[1] == Goal("Rectum", "V70Gy", max=15.0)
    assert robustness_params({}, {}, **LIMITS).goals == () and default_goals(["PTV"])[0].text == "PTV D95 >= 95 %"
    stored = robustness_params({"goals": ["CTV Dmean <= 60 Gy"]}, {}, **LIMITS).as_dict()["goals"]
    assert stored == [{"roi": "CTV", "metric": "Dmean", "max": 60.0, "unit": "Gy"}]  # what the job re-reads


def test_bands_hold_the_nominal_curve_and_the_envelope_brackets_every_scenario():
    doses = scenario_doses()
    bands = dvh_bands(doses, {"CTV": doses[0] > 0})["CTV"]
    assert all(lo <= nom <= hi for lo, nom, hi in zip(bands["min"], bands["nominal"], bands["max"]))
    assert bands["nominal"][0] == 100.0 and bands["max"][-1] > 0
    grids = [DoseGrid(dose_gy=d, origin_mm=(0, 0, 0), spacing_mm=(1, 1, 1), frame_of_reference_uid="1") for d in doses]
    low, high = dose_envelope(grids)
    assert all(np.all(low.dose_gy <= g.dose_gy) and np.all(g.dose_gy <= high.dose_gy) for g in grids)


def _settings(auto, robustness=None):
    from orthanc_rt.settings import Settings

    return Settings.from_orthanc_config({"OrthancRT": {"AutoRobustness": auto, "Robustness": robustness or {}}})


def test_automatic_rule_matches_plan_labels_and_validates_like_a_request():
    from orthanc_rt.scheduling.robustness import AutoRobustness

    rule = AutoRobustness.of(_settings({"Enabled": True, "LabelPattern": "^PROST", "Scenarios": {"random": 4},
                                        "Protocol": "p"}, {"Protocols": {"p": ["CTV D95 >= 95 %"]}}),
                             primaries_range=(1000, 10**9))
    assert rule.matches("PROSTATE 1") and not rule.matches("HN") and len(rule.params.scenario_list) == 5
    assert rule.params.goals_from == "protocol p"
    assert AutoRobustness.of(_settings({"Enabled": True}), primaries_range=(1000, 10**9)).matches("anything")
    assert not AutoRobustness.of(_settings({}), primaries_range=(1000, 10**9)).matches("anything")
    bad = AutoRobustness.of(_settings({"Enabled": True, "SetupErrorMm": 20}), primaries_range=(1000, 10**9))
    assert not bad.matches("x") and "setup_error_mm" in bad.problem
    bad = AutoRobustness.of(_settings({"Enabled": True, "LabelPattern": "("}), primaries_range=(1000, 10**9))
    assert not bad.enabled and "LabelPattern" in bad.problem
