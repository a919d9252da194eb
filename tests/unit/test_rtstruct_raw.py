"""ROI contours read straight from the encoded ROIContourSequence (orthanc_rt/dicom/raw_sequence.py) give exactly
what pydicom's reading gives, in every encoding senders use; what the fast reader cannot read goes to pydicom."""
from __future__ import annotations

import numpy as np
import pytest

from orthanc_rt.dicom import rtstruct
from orthanc_rt.dicom.raw_sequence import read_items
from orthanc_rt.dicom.rtstruct import read_structure_set
from orthanc_rt.dicom.serialize import from_bytes
from tests.support.cases import dvh_case, encoded, with_bad_rois, with_odd_contours

ENCODINGS = {
    "explicit VR": {},
    "implicit VR": {"implicit_vr": True},
    "nested undefined lengths": {"undefined_lengths": "nested"},
    "implicit VR, nested undefined lengths": {"implicit_vr": True, "undefined_lengths": "nested"},
    "all undefined lengths": {"undefined_lengths": "all"},  # pydicom parses these itself while reading
}
WANTED = {rtstruct._REFERENCED_ROI_NUMBER, rtstruct._COLOR, rtstruct._GEOMETRIC_TYPE, rtstruct._CONTOUR_DATA}


@pytest.fixture(scope="module")
def structure_sets():
    rs = dvh_case("raw-contours").rtstruct
    return {"plain": rs, "bad rois": with_bad_rois(rs), "odd contours": with_odd_contours(rs)}


def _fast_path_taken(ds) -> bool:
    return read_items(ds.get_item("ROIContourSequence"), WANTED, {rtstruct._CONTOURS}) is not None


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("variant", ["plain", "bad rois", "odd contours"])
def test_same_rois_as_pydicom(structure_sets, variant, encoding):
    source = structure_sets[variant]
    expected = read_structure_set(source)  # in-memory dataset: pydicom's values
    ds = from_bytes(encoded(source, **ENCODINGS[encoding]))
    assert _fast_path_taken(ds) == (encoding != "all undefined lengths")
    found = read_structure_set(ds)
    assert [(r.number, r.name, r.color, r.interpreted_type, r.rejected) for r in found.rois] == \
        [(r.number, r.name, r.color, r.interpreted_type, r.rejected) for r in expected.rois]
    for ours, theirs in zip(found.rois, expected.rois):
        assert [z for z, _ in ours.contours] == [z for z, _ in theirs.contours]
        assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(ours.contours, theirs.contours))
    if variant == "odd contours":
        assert expected.rois[1].rejected == ["contour 17: OPEN_PLANAR geometric type, not CLOSED_PLANAR",
                                             "contour 18: POINT geometric type, not CLOSED_PLANAR"]


def test_unreadable_bytes_go_to_pydicom(structure_sets):
    ds = from_bytes(encoded(structure_sets["plain"]))
    element = ds.get_item("ROIContourSequence")
    assert read_items(element._replace(value=element.value[:-7]), WANTED, set()) is None  # truncated
    assert read_items(element._replace(value=b"\x08\x00\x16\x00" + element.value[4:]), WANTED, set()) is None
    assert read_items(element._replace(is_little_endian=False), WANTED, set()) is None
    assert read_items(None, WANTED, set()) is None
    items = read_items(element, WANTED, set())  # ContourSequence not asked for as a sequence: raw bytes
    assert len(items) == 5 and isinstance(items[0][rtstruct._REFERENCED_ROI_NUMBER], bytes)
