"""LETd threshold, cropping and per-ROI statistics (orthanc_rt.analysis.let)."""
from __future__ import annotations

import numpy as np
import pytest

from orthanc_rt.analysis.let import dose_let_volume_histogram, let_on_region, let_statistics, restrict_let
from orthanc_rt.dicom.models import DoseGrid, LetGrid

GEOMETRY = dict(origin_mm=(0.0, 0.0, 0.0), spacing_mm=(1.0, 1.0, 1.0), frame_of_reference_uid="1.2.3")


def test_let_below_one_percent_of_the_dose_maximum_is_zero():
    dose = DoseGrid(dose_gy=np.array([[[100.0, 1.0, 0.99, 0.0]]], np.float32), **GEOMETRY)
    let = LetGrid(let_kev_um=np.array([[[1.0, 8.0, 60.0, 0.0]]], np.float32), **GEOMETRY)
    kept = restrict_let(let, dose)
    assert kept.threshold_gy == pytest.approx(1.0)
    assert kept.let_kev_um.ravel().tolist() == [1.0, 8.0, 0.0, 0.0]


def test_statistics_use_roi_voxels_above_the_threshold():
    dose = DoseGrid(dose_gy=np.array([[[100.0, 50.0, 50.0, 0.5]]], np.float32), **GEOMETRY)
    let = restrict_let(LetGrid(let_kev_um=np.array([[[1.0, 2.0, 6.0, 40.0]]], np.float32), **GEOMETRY), dose)
    mask = np.array([[[False, True, True, True]]])
    stats = let_statistics(let, dose, mask)
    assert (stats.mean_kev_um, stats.max_kev_um, stats.l50_kev_um, stats.voxels) == (4.0, 6.0, 4.0, 2)
    assert let_statistics(let, dose, np.array([[[False, False, False, True]]])) is None


def test_let_follows_the_cropped_dose_region():
    let = LetGrid(let_kev_um=np.arange(24, dtype=np.float32).reshape(2, 3, 4), **GEOMETRY)
    region = DoseGrid(dose_gy=np.ones((1, 2, 2), np.float32), origin_mm=(1.0, 1.0, 1.0), spacing_mm=(1.0, 1.0, 1.0),
                      frame_of_reference_uid="1.2.3")
    cut = let_on_region(let, region)
    assert cut.origin_mm == (1.0, 1.0, 1.0)
    assert cut.let_kev_um.tolist() == [[[17.0, 18.0], [21.0, 22.0]]]
    with pytest.raises(ValueError, match="not voxels of the LET grid"):
        let_on_region(let, DoseGrid(dose_gy=np.ones((1, 1, 1), np.float32), origin_mm=(0.5, 0.0, 0.0),
                                    spacing_mm=(1.0, 1.0, 1.0), frame_of_reference_uid="1.2.3"))


def _dlvh_grids(dose_values, let_values):
    shape = (1, 1, len(dose_values))
    geometry = dict(origin_mm=(0.0, 0.0, 0.0), spacing_mm=(1.0, 1.0, 1.0), frame_of_reference_uid="1.2.3")
    return (LetGrid(let_kev_um=np.asarray(let_values, dtype=np.float32).reshape(shape), **geometry),
            DoseGrid(dose_gy=np.asarray(dose_values, dtype=np.float32).reshape(shape), **geometry))


def test_dlvh_of_four_voxels_by_hand():
    # (dose Gy, LETd keV/um): (0, 0) below the threshold, (1, 2), (2, 1), (3, 3); the ROI is all four.
    let, dose = _dlvh_grids([0, 1, 2, 3], [0, 2, 1, 3])
    h = dose_let_volume_histogram(let, dose, np.ones((1, 1, 4), dtype=bool))
    assert h.voxels == 4 and h.dose_gy[:4] == [0, 0.1, 0.2, 0.3] and h.let_kev_um[:2] == [0, 0.1]

    def v(d, l_):
        return h.volume_pct[h.dose_gy.index(d)][h.let_kev_um.index(l_)]
    assert v(0, 0) == 100 and v(1, 0) == 75 and v(2, 0) == 50 and v(3, 0) == 25  # column 0: the DVH
    assert v(0, 1) == 75 and v(0, 2) == 50 and v(0, 3) == 25  # row 0: the LET volume histogram
    assert v(1, 2) == 50 and v(2, 2) == 25 and v(2, 1) == 50 and v(3, 3) == 25 and v(1.1, 2.1) == 25


def test_dlvh_equals_counting_every_threshold_pair():
    rng = np.random.default_rng(7)
    dose_values, let_values = rng.gamma(2.0, 10.0, 3000), rng.gamma(3.0, 1.5, 3000)
    let_values[dose_values < 5] = 0.0  # below the map's threshold
    let, dose = _dlvh_grids(dose_values, let_values)
    mask = rng.random((1, 1, 3000)) < 0.6
    h = dose_let_volume_histogram(let, dose, mask, max_bins=20)
    assert len(h.dose_gy) <= 20 and len(h.let_kev_um) <= 20 and h.voxels == mask.sum()
    d, l_ = np.asarray(dose.dose_gy)[mask], np.asarray(let.let_kev_um)[mask]
    for i, dose_edge in enumerate(h.dose_gy):
        for j, let_edge in enumerate(h.let_kev_um):
            expected = 100.0 * np.count_nonzero((d >= dose_edge - 1e-6) & (l_ >= let_edge - 1e-6)) / d.size
            assert h.volume_pct[i][j] == pytest.approx(expected, abs=1e-3), (dose_edge, let_edge)
    assert max(d) < h.dose_gy[-1] + (h.dose_gy[1] - h.dose_gy[0])  # the bins reach the highest dose


def test_dlvh_of_an_empty_roi_is_none():
    let, dose = _dlvh_grids([1, 2], [1, 2])
    assert dose_let_volume_histogram(let, dose, np.zeros((1, 1, 2), dtype=bool)) is None
