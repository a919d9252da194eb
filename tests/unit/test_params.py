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
