import pytest

from orthanc_rt.errors import ValidationError
from orthanc_rt.scheduling.params import dose_params
from orthanc_rt.settings import AutoDose

DEFAULTS = AutoDose(primaries=50_000, scoring_spacing_mm=None, wait_for_ct_seconds=60)


def test_defaults_fill_an_empty_body():
    p = dose_params({}, DEFAULTS)
    assert (p.primaries, p.scoring_spacing_mm, p.wait_for_ct_seconds) == (50_000, None, 60)


def test_explicit_values_are_kept():
    p = dose_params({"primaries": 20000, "scoring_spacing_mm": 2.5}, DEFAULTS)
    assert p.primaries == 20000 and p.scoring_spacing_mm == 2.5


@pytest.mark.parametrize(
    "body, field, words",
    [
        ({"primaries": 10}, "primaries", "between 1000"),
        ({"primaries": "many"}, "primaries", "must be a number"),
        ({"primaries": True}, "primaries", "must be a number"),
        ({"primaries": 1e4 + 0.5}, "primaries", "whole number"),
        ({"scoring_spacing_mm": 0}, "scoring_spacing_mm", "between 0.5 and 10"),
        ({"scoring_spacing_mm": 50}, "scoring_spacing_mm", "between 0.5 and 10"),
        ({"wait_for_ct_seconds": -1}, "wait_for_ct_seconds", "between 0"),
        ({"primarys": 1000}, "primarys", "unknown field"),
    ],
)
def test_bad_values_name_the_field(body, field, words):
    with pytest.raises(ValidationError, match=words) as info:
        dose_params(body, DEFAULTS)
    assert info.value.field == field
    assert str(info.value).startswith(field)


def test_identity_ignores_the_wait():
    a = dose_params({"wait_for_ct_seconds": 10}, DEFAULTS)
    b = dose_params({"wait_for_ct_seconds": 999}, DEFAULTS)
    assert a.identity() == b.identity()
    assert a.identity() != dose_params({"primaries": 60_000}, DEFAULTS).identity()


def test_let_and_rbe_fields_are_validated_and_kept():
    p = dose_params({"let": True, "rbe_model": "mcnamara", "alpha_beta_gy": 3, "alpha_beta_by_roi": {"Rectum": 3.9}},
                    DEFAULTS)
    assert (p.let, p.rbe_model, p.alpha_beta_gy, p.alpha_beta_by_roi) == (True, "mcnamara", 3.0, {"Rectum": 3.9})
    assert p.identity()["let"] is True and p.identity()["alpha_beta_by_roi"] == {"Rectum": 3.9}
    assert dose_params({"rbe_model": "constant"}, DEFAULTS).rbe_model == "constant"  # needs no LET


def test_a_request_without_let_keeps_the_identity_it_had_before():
    assert dose_params({"let": False}, DEFAULTS).identity() == {"primaries": 50_000, "scoring_spacing_mm": None}


@pytest.mark.parametrize(
    "body, field, words",
    [
        ({"let": "yes"}, "let", "true or false"),
        ({"let": True, "rbe_model": "lkb"}, "rbe_model", "one of constant, mcnamara, wedenberg"),
        ({"rbe_model": "wedenberg"}, "rbe_model", "needs the LETd"),
        ({"let": True, "rbe_model": "mcnamara", "alpha_beta_gy": 0}, "alpha_beta_gy", "between 0.5 and 30"),
        ({"let": True, "rbe_model": "mcnamara", "alpha_beta_gy": "two"}, "alpha_beta_gy", "must be a number"),
        ({"let": True, "alpha_beta_gy": 3}, "alpha_beta_gy", "only used by the variable RBE models"),
        ({"let": True, "rbe_model": "mcnamara", "alpha_beta_by_roi": {"Rectum": 99}}, "alpha_beta_by_roi",
         "between 0.5 and 30"),
        ({"let": True, "rbe_model": "mcnamara", "alpha_beta_by_roi": []}, "alpha_beta_by_roi", "an object"),
        ({"let": True, "rbe_model": "mcnamara", "alpha_beta_by_roi": {"": 3}}, "alpha_beta_by_roi", "ROI name"),
    ],
)
def test_bad_let_and_rbe_values_name_the_field(body, field, words):
    with pytest.raises(ValidationError, match=words) as info:
        dose_params(body, DEFAULTS)
    assert info.value.field == field


def test_the_automatic_dose_takes_let_and_rbe_from_the_configuration_and_names_a_bad_key():
    from orthanc_rt.scheduling.params import auto_dose_params
    from orthanc_rt.settings import Settings

    settings = Settings.from_orthanc_config({"OrthancRT": {"AutoDose": {
        "Primaries": 20000, "Let": True, "RbeModel": "mcnamara", "AlphaBetaGy": 3, "AlphaBetaByRoi": {"Rectum": 2}}}})
    params = auto_dose_params(settings.auto_dose)
    assert (params.let, params.rbe_model, params.alpha_beta_gy, params.alpha_beta_by_roi) == (
        True, "mcnamara", 3.0, {"Rectum": 2.0})
    assert auto_dose_params(Settings.from_orthanc_config({}).auto_dose).identity() == {
        "primaries": Settings.from_orthanc_config({}).auto_dose.primaries, "scoring_spacing_mm": None}
    bad = Settings.from_orthanc_config({"OrthancRT": {"AutoDose": {"Let": True, "RbeModel": "lkb"}}})
    with pytest.raises(ValidationError, match="AutoDose.RbeModel: must be one of") as info:
        auto_dose_params(bad.auto_dose)
    assert info.value.field == "AutoDose.RbeModel"
