"""Clinical goals: their three spellings, refusals naming the problem, metric values, verdicts on one dose and
worst cases over scenarios."""
from __future__ import annotations

import numpy as np
import pytest

from orthanc_rt.analysis.goals import evaluate_goals, metric_value
from orthanc_rt.errors import DicomInputError, ValidationError
from orthanc_rt.planning.goals import Goal, parse_goal, parse_goals
from tests.support.cases import scenario_doses


def test_the_three_spellings_are_one_goal():
    spellings = ["CTV D95 >= 95 %", {"roi": "CTV", "metric": "D95", "op": ">=", "value": 95, "unit": "%"},
                 {"roi": "CTV", "metric": "D95", "min": 95, "unit": "%"}]
    assert {parse_goal(item, "g") for item in spellings} == {Goal("CTV", "D95", min=95.0, unit="%")}
    both = parse_goal("PTV Dmean >= 74 Gy and <= 78 Gy", "g")
    assert (both.min, both.max, both.unit) == (74.0, 78.0, "Gy") and parse_goal(both.text, "g") == both
    assert parse_goal({"roi": "Rectum", "metric": "V70Gy", "max": 20}, "g").unit == "%"  # a volume's own unit
    assert parse_goal({"roi": "Cord", "metric": "Dmax", "max": 45}, "g").unit == "Gy"
    assert parse_goal(Goal("Cord", "Dmax", max=45.0).as_dict(), "g") == Goal("Cord", "Dmax", max=45.0)


@pytest.mark.parametrize("item, message", [
    ({"roi": "PTV", "metric": "D95"}, "min and/or max"),
    ({"roi": "PTV", "metric": "V70", "max": 3}, "V<dose>Gy"),
    ({"roi": "PTV", "metric": "D95", "min": -1}, "min must be a finite number >= 0"),
    ({"roi": "PTV", "metric": "D95", "min": True}, "min must be a finite number"),
    ({"roi": "PTV", "metric": "D95", "min": 1, "dose": 1}, "unknown field"),
    ({"roi": "PTV", "metric": "D95", "op": ">=", "value": 1, "max": 2}, "not both"),
    ({"roi": "PTV", "metric": "D95", "op": "=", "value": 1}, "must be >= or <="),
    ({"roi": "PTV", "metric": "V70Gy", "max": 20, "unit": "Gy"}, "a volume goal is in %"),
    ({"roi": "PTV", "metric": "D120", "min": 1}, "the volume must be 0-100 %"),
    ({"roi": "", "metric": "D95", "min": 1}, "roi must be"),
    ("CTV D95 >= 95 Gray", "is not"),
    ("CTV D95 >= 95 % and >= 96 %", "two >= limits"),
    ("CTV D95 >= 95 % and <= 30 Gy", "both limits in one unit"),
    (7, "a goal is a text"),
])
def test_bad_goals_are_refused_naming_the_problem(item, message):
    with pytest.raises(ValidationError, match=message) as caught:
        parse_goal(item, "goals[3]")
    assert caught.value.field == "goals[3]"


def test_a_goal_list_is_one_to_fifty_goals():
    with pytest.raises(ValidationError, match="1 to 50 goals"):
        parse_goals([], "goals")
    with pytest.raises(ValidationError, match="goals\\[1\\]"):
        parse_goals(["CTV D95 >= 95 %", "nonsense"], "goals")


def test_metrics_and_verdicts_on_a_known_dose():
    dose = np.arange(100, dtype=np.float64).reshape(1, 10, 10)  # 0..99 Gy, one voxel each
    everything = np.ones_like(dose, dtype=bool)
    assert metric_value("Dmax", dose.ravel()) == 99.0 and metric_value("Dmean", dose.ravel()) == 49.5
    assert metric_value("V70Gy", dose.ravel()) == 30.0  # 70..99
    assert metric_value("D95", dose.ravel()) == pytest.approx(np.percentile(dose, 5))
    results = evaluate_goals((Goal("A", "V70Gy", max=30.0), Goal("A", "V70Gy", max=29.9),
                              Goal("A", "D50", min=49.0, max=50.0), Goal("Gone", "Dmax", max=1.0),
                              Goal("A", "Dmean", min=98.0, unit="%")),
                             [dose], {"A": everything}, prescription_gy=50.0, require_rois=False)
    summaries = [r.summary() for r in results]
    assert [s["passed"] for s in summaries] == [True, False, True, None, True]
    assert summaries[0]["unit"] == "%" and summaries[2]["unit"] == "Gy" and summaries[3]["value"] is None
    assert summaries[4]["value"] == pytest.approx(99.0) and summaries[4]["reference_gy"] == 50.0


def test_worst_case_is_the_least_favourable_scenario():
    doses = scenario_doses()
    target = doses[0] > 0
    masks = {"CTV": target, "OAR": ~target}
    hot_limit, coverage, window = evaluate_goals(
        [Goal("CTV", "Dmax", max=10.2), Goal("CTV", "D95", min=95, unit="%"),
         Goal("CTV", "Dmean", min=9.2, max=10.4)], doses, masks, prescription_gy=None)
    assert hot_limit.worst == pytest.approx(10.5) and hot_limit.worst_scenario == 2 and not hot_limit.passed
    assert coverage.reference == "nominal" and coverage.values[0] == pytest.approx(100.0)
    assert coverage.worst == pytest.approx(90.0) and coverage.worst_scenario == 1 and not coverage.passed
    # Two limits: the value with the smallest margin, 9.0 (0.2 below the minimum) rather than 10.5 (0.1 above).
    assert window.worst_scenario == 1 and [window.passed_in(k) for k in range(3)] == [True, False, False]
    (prescribed,) = evaluate_goals([Goal("CTV", "D95", min=85, unit="%")], doses, masks, prescription_gy=10.5)
    assert prescribed.reference == "prescription" and prescribed.worst == pytest.approx(900 / 10.5)
    assert prescribed.passed


def test_a_goal_on_a_missing_or_empty_roi_is_named():
    doses = scenario_doses()
    masks = {"CTV": doses[0] > 0, "Empty": np.zeros((4, 4, 4), bool)}
    with pytest.raises(DicomInputError, match="no ROI 'Rectum'.*CTV, Empty"):
        evaluate_goals([Goal("Rectum", "V70Gy", max=15)], doses, masks, prescription_gy=None)
    with pytest.raises(DicomInputError, match="'Empty' holds no voxel"):
        evaluate_goals([Goal("Empty", "Dmax", max=15)], doses, masks, prescription_gy=None)
