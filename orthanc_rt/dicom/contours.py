"""Masks to closed planar polygons that run along voxel edges.

Each polygon follows the outer edges of the voxels of one slice, so it
encloses exactly the voxel centres of the mask: a viewer that fills a
contour by "centre inside, even-odd rule" recovers the mask voxel for voxel.
Holes come out as separate polygons (DICOM CLOSED_PLANAR has no hole flag;
viewers combine nested contours by the even-odd rule). Voxels touching only
at a corner give separate polygons (4-connectivity).
"""
from __future__ import annotations

import numpy as np

# Edge directions as (row step, column step) between voxel corners.
_DIRECTIONS = ((0, -1), (1, 0), (0, 1), (-1, 0))


def slice_polygons(mask: np.ndarray) -> list[np.ndarray]:
    """Polygons of a 2-D boolean mask, each an (n, 2) array of (row, column) vertices.

    Vertices lie on voxel corners, i.e. at half-integer row/column
    coordinates of the voxel centres; only corners where the outline turns
    are kept. The last vertex is not a repeat of the first.
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise ValueError(f"expected a 2-D mask, got shape {mask.shape}")
    outgoing = _boundary_edges(mask)
    polygons = []
    while outgoing:
        start = next(iter(outgoing))
        polygons.append(_trace(outgoing, start))
    return polygons


def _boundary_edges(mask: np.ndarray) -> dict[tuple[int, int], list[tuple[int, int]]]:
    """Directed voxel edges between mask and background, keyed by the corner they leave.

    Corner (i, j) is the top-left corner of voxel (i, j). Each edge keeps the
    mask on the same side, so the edges join into closed loops.
    """
    padded = np.pad(mask, 1)
    inside = padded[1:-1, 1:-1]
    outgoing: dict[tuple[int, int], list[tuple[int, int]]] = {}
    # (neighbour offset, edge start corner offset, direction index) for the four sides of a voxel.
    sides = (((-1, 0), (0, 1), 0),   # top: right to left
             ((0, -1), (0, 0), 1),   # left: downwards
             ((1, 0), (1, 0), 2),    # bottom: left to right
             ((0, 1), (1, 1), 3))    # right: upwards
    rows, columns = mask.shape
    for (dr, dc), (sr, sc), direction in sides:
        neighbour = padded[1 + dr:1 + dr + rows, 1 + dc:1 + dc + columns]
        for r, c in zip(*np.nonzero(inside & ~neighbour)):
            outgoing.setdefault((int(r) + sr, int(c) + sc), []).append(_DIRECTIONS[direction])
    return outgoing


def _trace(outgoing: dict[tuple[int, int], list[tuple[int, int]]], start: tuple[int, int]) -> np.ndarray:
    vertices = []
    corner, heading = start, None
    while True:
        choices = outgoing[corner]
        step = choices[0] if heading is None or len(choices) == 1 else _turn_apart(heading, choices)
        choices.remove(step)
        if not choices:
            del outgoing[corner]
        if step != heading:
            vertices.append(corner)
        heading = step
        corner = (corner[0] + step[0], corner[1] + step[1])
        if corner == start:
            break
    if vertices and heading == _first_heading(vertices):
        vertices.pop(0)  # the start lay in the middle of a straight run
    return np.asarray(vertices, dtype=np.float64) - 0.5


def _turn_apart(heading: tuple[int, int], choices: list[tuple[int, int]]) -> tuple[int, int]:
    """At a corner shared by two diagonal voxels, turn so that each voxel keeps its own outline."""
    return max(choices, key=lambda d: heading[0] * d[1] - heading[1] * d[0])


def _first_heading(vertices: list[tuple[int, int]]) -> tuple[int, int] | None:
    if len(vertices) < 2:
        return None
    (r0, c0), (r1, c1) = vertices[0], vertices[1]
    return (int(np.sign(r1 - r0)), int(np.sign(c1 - c0)))
