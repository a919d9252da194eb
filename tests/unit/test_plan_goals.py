"""Site protocols, goals in plan requests, conflicting objectives and the request fields of issue 14 (optimisation
grid, uncertainty stop). The goals themselves: test_goals."""
from __future__ import annotations

import numpy as np
import pytest

from orthanc_rt.errors import PlanRequestError
from orthanc_rt.planning.auto_rules import AutoPlanning, PlanningRule
from orthanc_rt.planning.goals import Goal
from orthanc_rt.planning.request import (
    Objective,
    PlanRequest,
    objective_conflicts,
    validate_parameters,
    validate_rois,
)
from orthanc_rt.scheduling.submission import parse


def test_the_prostate_protocol_scales_objectives_and_goals_to_the_prescription():
    request = PlanRequest.from_dict({"target_roi": "PTV", "protocol": "prostate", "prescription_gy": 38.0})
    validate_parameters(request)
    goals = {(g.roi, g.metric): g for g in request.goals}
    assert goals[("PTV", "D95")].min == pytest.approx(0.98 * 38.0)
    assert goals[("PTV", "D2")].max == pytest.approx(1.05 * 38.0)
    assert goals[("Rectum", "V35Gy")].max == 20.0 and goals[("Bladder", "V35Gy")].max == 15.0  # 70 Gy of 76, halved
    assert goals[("FemoralHead_L", "Dmax")].max == pytest.approx(25.0)
    assert {o.roi for o in request.objectives} == {"PTV", "Rectum", "Bladder", "FemoralHead_L", "FemoralHead_R"}
    assert request.gantry_angles == (90.0, 270.0)
    own = PlanRequest.from_dict({"target_roi": "Prostate", "protocol": "prostate"})  # its own 76 Gy in 38
    assert own.prescription_gy == 76.0 and own.fractions == 38
    assert {(g.metric, g.max) for g in own.goals if g.roi == "Rectum"} == {("V70Gy", 20.0)}
    assert PlanRequest.from_dict(own.as_dict()) == own
    mine = PlanRequest.from_dict({"target_roi": "PTV", "protocol": "prostate", "prescription_gy": 76.0,
                                  "beam_count": 3, "goals": [{"roi": "PTV", "metric": "D98", "min": 70}]})
    assert mine.gantry_angles == (0.0, 120.0, 240.0) and mine.goals == (Goal("PTV", "D98", min=70.0),)
    # The protocol's final dose (3 mm, to 1 % under a 2e7 cap) and beamlets (700 per spot), which a request overrides.
    assert (own.scoring_spacing_mm, own.final_uncertainty_pct, own.final_primaries, own.beamlet_primaries) == \
        (3.0, 1.0, 20_000_000, 700)
    fine = PlanRequest.from_dict({"target_roi": "PTV", "protocol": "prostate", "scoring_spacing_mm": None,
                                  "beamlet_primaries": 1000})
    assert fine.scoring_spacing_mm is None and fine.beamlet_primaries == 1000
    dmin = [o for o in own.objectives if o.roi == "Prostate" and o.type == "DMin"]
    assert [(o.dose_gy, o.weight) for o in dmin] == [(76.0, 10.0)]


def test_goals_and_objectives_name_rois_the_structure_set_must_contour():
    request = PlanRequest.from_dict({"target_roi": "PTV", "protocol": "prostate"})
    with pytest.raises(PlanRequestError, match="'Bladder' is not in the structure set"):
        validate_rois(request, {"PTV": True, "Rectum": True, "FemoralHead_L": True, "FemoralHead_R": True})
    with pytest.raises(PlanRequestError, match="'Rectum' has no contours"):
        validate_rois(request, {"PTV": True, "Rectum": False, "Bladder": True, "FemoralHead_L": True,
                                "FemoralHead_R": True})
    goal_only = PlanRequest.from_dict({"target_roi": "PTV", "prescription_gy": 2.0,
                                       "goals": [{"roi": "Cord", "metric": "Dmax", "max": 1}]})
    with pytest.raises(PlanRequestError, match=r"goal 1 \(Dmax on Cord\): ROI 'Cord' is not in"):
        validate_rois(goal_only, {"PTV": True})


def test_a_bad_goal_in_a_plan_request_is_refused_naming_it():
    with pytest.raises(PlanRequestError, match=r"goal 2: unknown field\(s\) dose"):
        PlanRequest.from_dict({"target_roi": "PTV", "prescription_gy": 2.0,
                               "goals": ["PTV D95 >= 98 %", {"roi": "PTV", "metric": "D95", "dose": 1}]})
    relative = PlanRequest.from_dict({"target_roi": "PTV", "prescription_gy": 2.0, "goals": ["PTV D95 >= 98 %"]})
    assert relative.goals == (Goal("PTV", "D95", min=98.0, unit="%"),)
    assert PlanRequest.from_dict(relative.as_dict()) == relative


@pytest.mark.parametrize("fields, message", [
    ({"protocol": "brain"}, "protocol 'brain' is not one of prostate"),
    ({"optimization_grid_mm": 0.2}, "optimization_grid_mm must be between 1 and 10"),
    ({"final_uncertainty_pct": 0.0}, "final_uncertainty_pct must be between 0.2 and 10"),
])
def test_bad_request_fields_are_refused_by_name(fields, message):
    with pytest.raises(PlanRequestError, match=message):
        validate_parameters(PlanRequest.from_dict({"target_roi": "PTV", "prescription_gy": 2.0, **fields}))


def test_a_minimum_above_an_overlapping_maximum_is_a_note_not_a_failure():
    ptv = np.zeros((4, 4, 4), bool)
    ptv[1:3, 1:3, 1:3] = True
    rectum = np.zeros_like(ptv)
    rectum[2:, :, :] = True  # overlaps the PTV's upper half
    apart = np.zeros_like(ptv)
    apart[0, 0, 0] = True
    objectives = (Objective("PTV", "DMin", 74.0), Objective("Rectum", "DMax", 60.0), Objective("Far", "DMax", 10.0),
                  Objective("Rectum", "DVHMax", 50.0, volume_pct=20.0))
    notes = objective_conflicts(objectives, {"PTV": ptv, "Rectum": rectum, "Far": apart})
    assert len(notes) == 1 and "DMin 74 Gy on PTV and DMax 60 Gy on Rectum conflict (4 voxels of overlap)" in notes[0]
    assert objective_conflicts(PlanRequest("PTV", 2.0).default_objectives(), {"PTV": ptv}) == []


def test_an_automatic_rule_may_name_the_site_protocol():
    rules = AutoPlanning(enabled=True, rules=(PlanningRule(name="prostate", target_pattern="PTV.*",
                                                           workflow="proton-impt", protocol="prostate"),))
    request = rules.request_for(rules.rules[0], "PTV_76")
    assert request.target_roi == "PTV_76" and request.prescription_gy == 76.0 and len(request.goals) == 6
    with pytest.raises(PlanRequestError, match="nor a site protocol"):
        rules.request_for(PlanningRule(name="x", target_pattern="PTV", workflow="proton-impt", protocol="lung"),
                          "PTV")


def test_a_rest_body_naming_the_protocol_gets_its_beams_goals_and_new_fields():
    workflow, request = parse({"study": "s", "target_roi": "PTV", "protocol": "prostate", "prescription_gy": 60})
    assert workflow == "proton-impt" and request.gantry_angles == (90.0, 270.0) and len(request.goals) == 6
    assert request.optimization_grid_mm == 3.0 and request.final_uncertainty_pct == 1.0
    _, own = parse({"study": "s", "target_roi": "PTV", "prescription_gy": 2, "optimization_grid_mm": None,
                    "final_uncertainty_pct": None, "goals": [{"roi": "PTV", "metric": "D95", "min": 1.9}]})
    assert own.optimization_grid_mm is None and own.final_uncertainty_pct is None and own.gantry_angles == (0, 180)
    with pytest.raises(PlanRequestError, match="goals, protocol: not a parameter of workflow photon-ccc"):
        parse({"study": "s", "workflow": "photon-ccc", "target_roi": "PTV", "prescription_gy": 2,
               "protocol": "prostate", "goals": []})


def test_objectives_are_accepted_by_their_clinical_names():
    request = PlanRequest.from_dict({"target_roi": "PTV", "prescription_gy": 2.0, "objectives": [
        {"roi": "PTV", "type": "Uniform dose", "dose_gy": 2.0}, {"roi": "Cord", "type": "max dose", "dose_gy": 1.0},
        {"roi": "Rectum", "type": "Max DVH", "dose_gy": 1.5, "volume_pct": 20}]})
    assert [o.type for o in request.objectives] == ["DUniform", "DMax", "DVHMax"]
    with pytest.raises(PlanRequestError, match="type 'Max EUD' is not one of"):
        validate_parameters(PlanRequest.from_dict({"target_roi": "PTV", "prescription_gy": 2.0, "objectives": [
            {"roi": "PTV", "type": "Max EUD", "dose_gy": 2.0}]}))
