"""LETd threshold, cropping and per-ROI statistics (orthanc_rt.analysis.let)."""
from __future__ import annotations

import numpy as np
import pytest

from orthanc_rt.analysis.let import let_on_region, let_statistics, restrict_let
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
