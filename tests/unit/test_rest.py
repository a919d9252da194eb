"""Request bodies: size and nesting are checked before parsing (deep nesting crashed Orthanc)."""
import pytest

from plugin.rest import MAX_JSON_DEPTH, HttpError, Request, json_depth


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
