"""Step-and-shoot MLC segments that deliver a photon beam's beamlet weights exactly.

A beam's intensity map is a grid of bixels (beamlets) with a weight each. An
MLC whose leaf pairs are one bixel row high delivers it by the unidirectional
sweep of Bortfeld et al. (Int J Radiat Oncol Biol Phys 28:723, 1994) and
Spirou & Chui (Med Phys 21:1031, 1994): in every row the right leaf uncovers
bixel i at cumulative meterset A_i and the left leaf covers it again at
B_i = A_i + w_i, with A_0 = 0 and A_{i+1} = A_i + max(0, w_i - w_{i+1}), the
shortest schedule in which both leaves only move towards +X. Between two
consecutive leaf events the aperture is constant: that is one segment, its
meterset the time between the events. Summing the segments gives back every
bixel's weight (to rounding), with no quantisation of the weights.

Coordinates are IEC beam-limiting-device X (leaf travel) and Y (leaf pairs)
at the isocentre plane, in mm.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from orthanc_rt.errors import SequencingError

MLC_HALF_FIELD_MM = 200.0  # the leaf bank covers Y in [-200, 200] mm, as OpenTPS' example MLC does
_GRID_TOLERANCE = 1e-3  # beamlets within this fraction of a bixel of the grid count as on it


@dataclass(frozen=True)
class Segment:
    meterset: float  # weight delivered through this aperture
    left_mm: np.ndarray  # X of each leaf pair's left (bank A, -X) leaf tip
    right_mm: np.ndarray  # X of each right (bank B, +X) leaf tip


@dataclass(frozen=True)
class SequencedBeam:
    leaf_boundaries_mm: np.ndarray  # Y of the leaf-pair edges (pairs + 1 values, increasing)
    jaw_x_mm: tuple[float, float]  # jaws around every open bixel
    jaw_y_mm: tuple[float, float]
    segments: list[Segment]

    @property
    def meterset(self) -> float:
        return float(sum(s.meterset for s in self.segments))


def sequence(x_mm: np.ndarray, y_mm: np.ndarray, weights: np.ndarray, size_mm: tuple[float, float]) -> SequencedBeam:
    """Segments delivering `weights` at bixel centres (`x_mm`, `y_mm`) of a `size_mm` (X, Y) grid."""
    x, y, w = (np.atleast_1d(np.asarray(a, dtype=np.float64)) for a in (x_mm, y_mm, weights))
    width, height = (float(s) for s in size_mm)
    if not x.size == y.size == w.size:
        raise SequencingError(f"{x.size} x, {y.size} y and {w.size} weights: expected as many of each")
    if not (width > 0 and height > 0):
        raise SequencingError(f"bixel size {size_mm} mm must be positive")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y)) and np.all(np.isfinite(w))):
        raise SequencingError("beamlet positions and weights must be finite")
    if np.any(w < 0):
        raise SequencingError(f"negative beamlet weight ({w.min():g})")
    open_ = w > 0
    if not np.any(open_):
        raise SequencingError("no beamlet has a positive weight")
    x0, y0 = float(x[open_].min()), float(y[open_].min())
    column, row = _grid_index(x[open_], x0, width, "X"), _grid_index(y[open_], y0, height, "Y")
    columns, rows = int(column.max()) + 1, int(row.max()) + 1
    bottom, top = y0 - height / 2, y0 + (rows - 0.5) * height
    if bottom < -MLC_HALF_FIELD_MM - 1e-6 or top > MLC_HALF_FIELD_MM + 1e-6:
        raise SequencingError(f"beamlets span Y {bottom:g} to {top:g} mm, beyond the MLC's ±{MLC_HALF_FIELD_MM:g} mm")
    # Leaf pairs one bixel row high, aligned with the bixels, covering the MLC's whole Y range.
    below = math.ceil((bottom + MLC_HALF_FIELD_MM) / height - _GRID_TOLERANCE)
    above = math.ceil((MLC_HALF_FIELD_MM - bottom) / height - _GRID_TOLERANCE)
    boundaries = bottom + height * np.arange(-below, above + 1)
    fluence = np.zeros((rows, columns))
    for r, c, weight in zip(row, column, w[open_]):
        if fluence[r, c]:
            raise SequencingError(f"two beamlets at X {x0 + c * width:g} mm, Y {y0 + r * height:g} mm")
        fluence[r, c] = weight
    segments = _sweep(fluence, x0 - width / 2, width)
    first_pair = below  # the pair whose lower edge is `bottom`
    pairs = len(boundaries) - 1
    # Closed pairs meet under the X jaw, at its left edge.
    parked = x0 - width / 2
    full = []
    for segment in segments:
        left = np.full(pairs, parked)
        right = np.full(pairs, parked)
        left[first_pair:first_pair + rows] = segment.left_mm
        right[first_pair:first_pair + rows] = segment.right_mm
        full.append(Segment(segment.meterset, left, right))
    return SequencedBeam(leaf_boundaries_mm=boundaries,
                         jaw_x_mm=(x0 - width / 2, x0 + (columns - 0.5) * width),
                         jaw_y_mm=(bottom, top), segments=full)


def delivered(beam: SequencedBeam, x_mm: np.ndarray, y_mm: np.ndarray) -> np.ndarray:
    """The weight each bixel centre (`x_mm`, `y_mm`) receives from the segments (inside the jaws and leaves)."""
    x, y = np.asarray(x_mm, dtype=np.float64), np.asarray(y_mm, dtype=np.float64)
    pair = np.searchsorted(beam.leaf_boundaries_mm, y) - 1
    inside_jaws = (beam.jaw_x_mm[0] < x) & (x < beam.jaw_x_mm[1]) & (beam.jaw_y_mm[0] < y) & (y < beam.jaw_y_mm[1])
    total = np.zeros(x.shape)
    for segment in beam.segments:
        total += segment.meterset * ((segment.left_mm[pair] < x) & (x < segment.right_mm[pair]) & inside_jaws)
    return total


def _grid_index(values: np.ndarray, origin: float, step: float, axis: str) -> np.ndarray:
    index = (values - origin) / step
    rounded = np.rint(index)
    if np.any(np.abs(index - rounded) > _GRID_TOLERANCE):
        raise SequencingError(f"beamlet {axis} positions are not on a {step:g} mm grid")
    return rounded.astype(int)


def _sweep(fluence: np.ndarray, left_edge_mm: float, width: float) -> list[Segment]:
    """Segments of the unidirectional sweep over every row of `fluence` [row, column]."""
    rows, columns = fluence.shape
    opens = np.zeros_like(fluence)  # A: when the right leaf uncovers each bixel
    for c in range(1, columns):
        opens[:, c] = opens[:, c - 1] + np.maximum(0.0, fluence[:, c - 1] - fluence[:, c])
    closes = opens + fluence  # B: when the left leaf covers it again
    events = np.unique(np.concatenate([opens.ravel(), closes.ravel()]))
    segments = []
    for start, stop in zip(events[:-1], events[1:]):
        exposed = (opens <= start) & (closes > start)  # contiguous in each row: A and B never decrease
        if not exposed.any():
            continue
        left = np.full(rows, left_edge_mm)
        right = np.full(rows, left_edge_mm)
        for r in np.flatnonzero(exposed.any(axis=1)):
            open_columns = np.flatnonzero(exposed[r])
            left[r] = left_edge_mm + open_columns[0] * width
            right[r] = left_edge_mm + (open_columns[-1] + 1) * width
        segments.append(Segment(float(stop - start), left, right))
    return segments
