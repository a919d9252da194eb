"""Request bodies: size and nesting are checked before parsing (deep nesting crashed Orthanc); query values
are decoded once; integers and strings no validator could name are made nameable or refused by field."""
import pytest

from plugin.rest import MAX_JSON_DEPTH, HttpError, Request, decode_query, json_depth


def test_json_depth_ignores_brackets_in_strings():
    assert json_depth(b'{"a": [1, {"b": "[[[[{{{"}]}') == 3
    assert json_depth(b'{"a": "\\"[[["}') == 1
    assert json_depth(b"") == 0


@pytest.mark.parametrize("body,status", [(b"[" * 100_000, 400), (b"{" * (MAX_JSON_DEPTH + 1), 400),
                                         (b"x" * 1_000_001, 413), (b"[1]", 400), (b"{bad", 400)])
def test_bad_bodies_are_refused_before_or_by_parsing(body, status):
    with pytest.raises(HttpError) as info:
        Request("POST", "/rt/x", body=body).json()
    assert info.value.status == status


def test_a_flat_object_parses():
    assert Request("POST", "/rt/x", body=b'{"primaries": 20000}').json() == {"primaries": 20000}


@pytest.mark.parametrize("raw,decoded", [
    ({"roi": "Parotid+L"}, {"roi": "Parotid L"}), ({"roi": "Parotid%20L"}, {"roi": "Parotid L"}),
    ({"roi": "PTV%2B5mm"}, {"roi": "PTV+5mm"}), ({"r%C3%B3i": "Par%C3%B3tida"}, {"rói": "Parótida"}),
    ({"since": "2026-01-01T10%3A00%3A00%2B01%3A00"}, {"since": "2026-01-01T10:00:00+01:00"}),
    ({"a": "100%"}, {"a": "100%"}), ({"a": "%ZZ"}, {"a": "%ZZ"}), ({"a": "x%26y%3Dz"}, {"a": "x&y=z"}),
    (None, {}),
])
def test_query_values_are_decoded_as_clients_encode_them(raw, decoded):
    assert decode_query(raw) == decoded


@pytest.mark.parametrize("raw,field", [({"roi": "%C3"}, "roi"), ({"roi": "%ED%A0%80"}, "roi"),
                                       ({"roi": "\udcff"}, "roi"), ({"r%FFoi": "1"}, "r%FFoi")])
def test_query_values_that_are_not_utf8_are_a_400_naming_them(raw, field):
    with pytest.raises(HttpError) as info:
        decode_query(raw)
    assert (info.value.status, info.value.details["field"]) == (400, field)


def test_integers_beyond_15_digits_are_read_as_floats_not_refused_unnamed():
    body = Request("POST", "/rt/x", body=b'{"primaries": ' + b"9" * 5000 + b', "n": 123456789012345}').json()
    assert body == {"primaries": float("inf"), "n": 123456789012345}
    assert Request("POST", "/rt/x", body=b'{"n": -1234567890123456}').json() == {"n": -1234567890123456.0}


@pytest.mark.parametrize("body,field", [
    (b'{"label": "\\ud800"}', "label"), (b'{"objectives": [{"roi": "a\\udfffb"}]}', "objectives[0].roi"),
    (b'{"details": {"note": ["ok", "\\udc00"]}}', "details.note[1]"), (b'{"\\ud800": 1}', ""),
])
def test_lone_surrogates_are_refused_by_field(body, field):
    with pytest.raises(HttpError) as info:
        Request("POST", "/rt/x", body=body).json()
    assert (info.value.status, info.value.details["field"]) == (400, field)
    assert Request("POST", "/rt/x", body=b'{"label": "\\ud83d\\ude42 ok"}').json() == {"label": "\U0001f642 ok"}
