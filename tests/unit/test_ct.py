"""read_ct_series: sorting, geometry, rescale, and the refusals that keep a volume from being misplaced."""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pydicom
import pytest

from orthanc_rt.dicom import sop
from orthanc_rt.dicom.ct import build_ct_series, read_ct_geometry, read_ct_series
from orthanc_rt.dicom.models import CtVolume
from orthanc_rt.dicom.serialize import from_bytes, to_bytes
from orthanc_rt.dicom.uids import derive_uid
from orthanc_rt.errors import DicomInputError
from tests.support import cases as util

SHARED_CT = Path(__file__).resolve().parents[3] / "shared" / "data" / "SimpleFantomWithStruct"


def _ct(shape=(5, 4, 3), origin=(-10.0, 20.0, -30.0), spacing=(1.5, 2.0, 2.5), series="unit-ct"):
    rng = np.random.default_rng(7)
    hu = rng.integers(-1000, 1500, size=shape).astype(np.float32)
    volume = CtVolume(hu=hu, origin_mm=origin, spacing_mm=spacing,
                      frame_of_reference_uid=util.STUDY.frame_of_reference_uid)
    return volume, build_ct_series(volume, util.STUDY, series_instance_uid=derive_uid(series))


def test_volume_geometry_and_hu_survive_writing_and_reading():
    volume, slices = _ct()
    read = read_ct_series([from_bytes(to_bytes(ds)) for ds in slices])
    np.testing.assert_array_equal(read.hu, volume.hu)
    assert read.hu.dtype == np.float32
    assert read.origin_mm == volume.origin_mm
    assert read.spacing_mm == pytest.approx(volume.spacing_mm)
    assert read.shape_zyx == (5, 4, 3)
    assert read.frame_of_reference_uid == util.STUDY.frame_of_reference_uid
    assert read.study_instance_uid == util.STUDY.study_instance_uid
    assert read.series_instance_uid == derive_uid("unit-ct")
    assert read.sop_instance_uids == [str(ds.SOPInstanceUID) for ds in slices]


def test_slices_are_sorted_along_z_whatever_order_they_come_in():
    volume, slices = _ct()
    shuffled = [slices[i] for i in (3, 0, 4, 2, 1)]
    read = read_ct_series(shuffled)
    np.testing.assert_array_equal(read.hu, volume.hu)
    assert read.sop_instance_uids == [str(ds.SOPInstanceUID) for ds in slices]
    assert read.origin_mm[2] == -30.0


def test_rescale_slope_and_intercept_are_applied():
    _, slices = _ct()
    stored = slices[0].pixel_array.astype(np.float32)
    slices[0].RescaleSlope = 2
    slices[0].RescaleIntercept = -1000
    read = read_ct_series(slices)
    np.testing.assert_array_equal(read.hu[0], stored * 2 - 1000)


def test_geometry_alone_does_not_need_pixels():
    _, slices = _ct()
    for ds in slices:
        del ds.PixelData
    geometry = read_ct_geometry(slices)
    assert geometry.shape_zyx == (5, 4, 3) and geometry.spacing_mm == pytest.approx((1.5, 2.0, 2.5))
    with pytest.raises(DicomInputError, match="cannot decode the pixel data"):
        read_ct_series(slices)


def _drop_middle(slices):
    del slices[2]


def _shift_z(slices):
    slices[3].ImagePositionPatient = [-10.0, 20.0, -30.0 + 3 * 2.5 + 0.5]


def _duplicate(slices):
    slices.append(copy.deepcopy(slices[1]))


def _other_series(slices):
    slices[1].SeriesInstanceUID = derive_uid("another series")


def _other_frame(slices):
    slices[1].FrameOfReferenceUID = derive_uid("another frame")


def _feet_first(slices):
    for ds in slices:
        ds.ImageOrientationPatient = [-1, 0, 0, 0, 1, 0]


def _tilted(slices):
    slices[0].ImageOrientationPatient = [1, 0, 0, 0, 0.9848, 0.1736]


def _other_size(slices):
    slices[2].Rows = 8


def _other_pixel_spacing(slices):
    slices[2].PixelSpacing = [2.0, 1.0]


def _shifted_in_plane(slices):
    slices[2].ImagePositionPatient = [-9.0, 20.0, -25.0]


def _not_ct(slices):
    slices[0].SOPClassUID = sop.RT_DOSE


def _enhanced(slices):
    slices[0].SOPClassUID = sop.ENHANCED_CT_IMAGE


def _single(slices):
    del slices[1:]


REFUSALS = [
    (_drop_middle, r"1 slice\(s\) missing between z = -27.500 and z = -22.500 mm \(gap 5.000 mm, spacing 2.500 mm\)"),
    (_shift_z, r"non-uniform slice spacing: gap of 3.000 mm between z = -25.000 and z = -22.000 mm where the "
               r"typical gap is 2.500 mm"),
    (_duplicate, r"two slices at z = -27.500 mm"),
    (_other_series, r"2 different SeriesInstanceUID \(0020,000E\) values"),
    (_other_frame, r"2 different FrameOfReferenceUID \(0020,0052\) values"),
    (_feet_first, r"ImageOrientationPatient \(0020,0037\) is \[-1, 0, 0, 0, 1, 0\]; only axial images"),
    (_tilted, r"CT slice .*ImageOrientationPatient \(0020,0037\) is \[1, 0, 0, 0, 0.9848, 0.1736\]"),
    (_other_size, r"slices of different sizes"),
    (_other_pixel_spacing, r"PixelSpacing \(0028,0030\) differs between slices"),
    (_shifted_in_plane, r"x, y .* differ from the first slice's"),
    (_not_ct, r"expected CT Image Storage .*got RT Dose Storage"),
    (_enhanced, r"Enhanced CT Image Storage .* is not supported"),
    (_single, r"at least two slices"),
]


@pytest.mark.parametrize("change, message", REFUSALS, ids=[c.__name__.strip("_") for c, _ in REFUSALS])
def test_refusals_say_what_is_wrong(change, message):
    _, slices = _ct()
    change(slices)
    with pytest.raises(DicomInputError, match=message):
        read_ct_series(slices)


def test_no_slices_is_refused():
    with pytest.raises(DicomInputError, match="no slices"):
        read_ct_series([])


@pytest.mark.skipif(not SHARED_CT.is_dir(), reason="shared test data not present")
def test_reads_a_ct_written_by_another_tool():
    """OpenTPS' synthetic phantom: 200 slices of 200 x 200 at 1 mm, HU 50 to 300 (shared/data/README.md).

    OpenTPS wrote it with an empty FrameOfReferenceUID (Type 1): refused as it
    is, read once the attribute is filled in.
    """
    datasets = [pydicom.dcmread(path) for path in sorted(SHARED_CT.glob("CT_*.dcm"))]
    with pytest.raises(DicomInputError, match=r"FrameOfReferenceUID \(0020,0052\) is missing"):
        read_ct_series(datasets)
    for ds in datasets:
        ds.FrameOfReferenceUID = derive_uid("shared phantom frame")
    volume = read_ct_series(datasets)
    assert volume.shape_zyx == (200, 200, 200)
    assert volume.spacing_mm == pytest.approx((1.0, 1.0, 1.0))
    assert 50 <= float(volume.hu.min()) and float(volume.hu.max()) <= 300
    z = [float(ds.ImagePositionPatient[2]) for ds in datasets]
    assert volume.origin_mm[2] == pytest.approx(min(z))
