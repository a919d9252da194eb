"""Dose overlays put the dose where it is: checked pixel by pixel on a synthetic case."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from orthanc_rt.dicom.models import CtVolume, DoseGrid
from orthanc_rt.errors import OverlayError
from orthanc_rt.rendering.overlay import Outline, render_png

FOR = "1.2.3"


def _case():
    hu = np.zeros((20, 40, 60), dtype=np.float32)  # z, y, x; 2 mm voxels
    ct = CtVolume(hu=hu, origin_mm=(-59.0, -39.0, -19.0), spacing_mm=(2.0, 2.0, 2.0), frame_of_reference_uid=FOR)
    dose = np.zeros((10, 20, 30))  # a coarser 4 mm dose grid over the same box
    dose[5, 15, 25] = 2.0  # hot voxel at x = -58+100 = 42 mm, y = -38+60 = 22 mm, z = -18+20 = 2 mm
    grid = DoseGrid(dose_gy=dose, origin_mm=(-58.0, -38.0, -18.0), spacing_mm=(4.0, 4.0, 4.0),
                    frame_of_reference_uid=FOR)
    mask = np.zeros_like(hu, dtype=bool)
    mask[5:15, 5:15, 5:15] = True  # x, y from -49 to -31 mm
    return ct, grid, [Outline("Box", (0, 255, 0), mask)]


def _pixel_of(x_mm, y_mm, ct, image):
    """Where an axial point lands in the image (the image is scaled to 512 px on its long side)."""
    sx, sy, _ = ct.spacing_mm
    scale = image.size[0] / (ct.hu.shape[2] * sx)
    return int((x_mm - ct.origin_mm[0] + sx / 2) * scale), int((y_mm - ct.origin_mm[1] + sy / 2) * scale)


def test_hot_spot_is_red_and_elsewhere_is_grey_ct():
    ct, grid, outlines = _case()
    image = Image.open(io.BytesIO(render_png(ct, grid, outlines))).convert("RGB")
    assert image.size == (512, round(512 * 40 / 60))
    r, g, b = image.getpixel(_pixel_of(42.0, 22.0, ct, image))
    assert r > 150 and b < 100, (r, g, b)  # the wash at the maximum is red
    far = image.getpixel(_pixel_of(-10.0, -30.0, ct, image))
    assert far[0] == far[1] == far[2]  # plain CT grey: no dose there


def test_outlines_are_drawn_on_their_edges():
    ct, grid, outlines = _case()
    image = Image.open(io.BytesIO(render_png(ct, grid, outlines, index=10))).convert("RGB")
    edge_x, _ = _pixel_of(-49.0 - 1.0, -20.0, ct, image)  # the mask's left edge (x -50 mm), inside its y range
    column = [image.getpixel((edge_x + dx, _pixel_of(0, -20.0, ct, image)[1])) for dx in (-1, 0, 1)]
    assert (0, 255, 0) in column


@pytest.mark.parametrize("kwargs, field", [
    ({"plane": "oblique"}, "plane"), ({"window": "brain"}, "window"), ({"index": 99}, "slice")])
def test_bad_parameters_name_themselves(kwargs, field):
    ct, grid, outlines = _case()
    with pytest.raises(OverlayError, match=field):
        render_png(ct, grid, outlines, **kwargs)
