"""Polygons of labelled regions, traced along cell boundaries (numpy only).

A label image ``[H, W]`` is a grid of unit cells; cell ``(i, j)`` spans ``x = j .. j + 1`` and
``y = i .. i + 1``. For each label, every cell edge between a cell of that label and one of
another is a boundary edge, directed so that the label lies on its right when walking on the
screen (``y`` down). Chaining each edge to the next one at its end vertex gives closed rings:
outer rings run counter-clockwise in ``(x, y)`` (positive shoelace area) and holes clockwise,
as GeoJSON's right-hand rule asks. Where two cells of a label touch only at a corner, the walk
turns towards the label, so they become separate polygons (4-connectivity); where a region
touches itself at a corner, its ring is split there into an outer ring and a hole that touch at
that point, so no ring touches itself. Each hole goes with the outer ring of the region its
cells border (regions found by a numpy union-find).
"""

from __future__ import annotations

import numpy as np

# Directions, clockwise on the screen: a right turn is +1.
_EAST, _SOUTH, _WEST, _NORTH = range(4)
_STEP = np.array([[0, 1], [1, 0], [0, -1], [-1, 0]])  # (dy, dx) of each direction


def _boundary_edges(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Start vertices ``(y, x)`` ``[E, 2]``, end vertices and directions of the boundary edges."""
    m = np.pad(mask, 1)
    above, below = m[:-1, 1:-1], m[1:, 1:-1]  # horizontal edges: (H + 1, W)
    left, right = m[1:-1, :-1], m[1:-1, 1:]  # vertical edges: (H, W + 1)
    starts, dirs = [], []
    for sel, direction, shift in (
        (below & ~above, _EAST, (0, 0)),
        (above & ~below, _WEST, (0, 1)),
        (left & ~right, _SOUTH, (0, 0)),
        (right & ~left, _NORTH, (1, 0)),
    ):
        yx = np.argwhere(sel) + np.array(shift)
        starts.append(yx)
        dirs.append(np.full(len(yx), direction))
    start = np.concatenate(starts)
    direction = np.concatenate(dirs)
    return start, start + _STEP[direction], direction


def _successors(start: np.ndarray, end: np.ndarray, direction: np.ndarray, width: int) -> list:
    """For each edge, the index of the edge that follows it (right turn, straight, left)."""
    vertex = start[:, 0] * (width + 1) + start[:, 1]
    keys = vertex * 4 + direction
    order = np.argsort(keys)
    sorted_keys = keys[order]
    end_vertex = end[:, 0] * (width + 1) + end[:, 1]
    successor = np.full(len(keys), -1)
    for turn in (3, 0, 1):  # left, straight, right: later assignments win
        wanted = end_vertex * 4 + (direction + turn) % 4
        pos = np.clip(np.searchsorted(sorted_keys, wanted), 0, len(keys) - 1)
        found = sorted_keys[pos] == wanted
        successor[found] = order[pos[found]]
    return successor.tolist()


def _rings(start: np.ndarray, direction: np.ndarray, successor: list) -> list[np.ndarray]:
    """Follow successors into closed rings of corner vertices, as float ``(x, y)`` arrays."""
    seen = np.zeros(len(successor), dtype=bool)
    rings = []
    for first in range(len(successor)):
        if seen[first]:
            continue
        cycle = []
        edge = first
        while not seen[edge]:
            seen[edge] = True
            cycle.append(edge)
            edge = successor[edge]
        cycle = np.asarray(cycle)
        turning = direction[cycle] != direction[np.roll(cycle, 1)]
        corners = start[cycle[turning]][:, ::-1].astype(np.float64)
        rings.extend(_split_pinches(corners))
    return rings


def _split_pinches(corners: np.ndarray) -> list[np.ndarray]:
    """Split a ring that passes twice through a vertex into simple closed rings.

    A region whose cells touch themselves only at a corner (a U whose arms meet diagonally) has
    an outer boundary that visits that corner twice; the pieces are the outer ring and a hole
    touching it at that point, which is how GeoJSON/JTS want it.
    """
    pieces, stack, where = [], [], {}
    for point in map(tuple, corners):
        if point in where:
            at = where[point]
            pieces.append(stack[at:])
            for p in stack[at + 1 :]:
                del where[p]
            stack = stack[: at + 1]
        else:
            where[point] = len(stack)
            stack.append(point)
    pieces.append(stack)
    return [np.array([*piece, piece[0]], dtype=np.float64) for piece in pieces]


def signed_area(ring: np.ndarray) -> float:
    """Shoelace area of a closed ``(x, y)`` ring: positive when counter-clockwise in ``(x, y)``."""
    x, y = ring[:, 0], ring[:, 1]
    return float(np.sum(x[:-1] * y[1:] - x[1:] * y[:-1]) / 2)


def _components(mask: np.ndarray) -> np.ndarray:
    """4-connected component number of every cell (-1 outside the mask).

    Union-find done in numpy: every round hooks the larger root of each pair of neighbours onto
    the smaller one, then compresses paths, until neighbours agree.
    """
    ids = np.full(mask.shape, -1, dtype=np.int64)
    ids[mask] = np.arange(np.count_nonzero(mask))
    pairs = [
        (ids[:, :-1][mask[:, :-1] & mask[:, 1:]], ids[:, 1:][mask[:, :-1] & mask[:, 1:]]),
        (ids[:-1][mask[:-1] & mask[1:]], ids[1:][mask[:-1] & mask[1:]]),
    ]
    u = np.concatenate([p[0] for p in pairs])
    v = np.concatenate([p[1] for p in pairs])
    parent = np.arange(np.count_nonzero(mask))
    while True:
        pu, pv = parent[u], parent[v]
        differ = pu != pv
        if not differ.any():
            break
        np.minimum.at(parent, np.maximum(pu, pv)[differ], np.minimum(pu, pv)[differ])
        while True:
            grand = parent[parent]
            if np.array_equal(grand, parent):
                break
            parent = grand
    out = np.full(mask.shape, -1, dtype=np.int64)
    out[mask] = parent
    return out


def _right_cell(ring: np.ndarray) -> tuple[int, int]:
    """``(row, col)`` of the cell on the right of a ring's first edge (a cell of the region)."""
    (x0, y0), (x1, y1) = ring[0], ring[1]
    dx, dy = np.sign(x1 - x0), np.sign(y1 - y0)
    return int(np.floor(y0 + dy / 2 + dx / 2)), int(np.floor(x0 + dx / 2 - dy / 2))


def mask_polygons(mask: np.ndarray) -> list[list[np.ndarray]]:
    """Polygons of a boolean mask: each ``[outer, hole, ...]``, closed ``(x, y)`` rings.

    One polygon per 4-connected region; a ring belongs to the region of the cells on its right.
    """
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return []
    start, end, direction = _boundary_edges(mask)
    rings = _rings(start, direction, _successors(start, end, direction, mask.shape[1]))
    component = _components(mask)
    owners = [component[_right_cell(ring)] for ring in rings]
    areas = [signed_area(ring) for ring in rings]
    polygons = {owners[i]: [rings[i]] for i in range(len(rings)) if areas[i] > 0}
    for i in range(len(rings)):
        if areas[i] < 0:
            polygons[owners[i]].append(rings[i])
    return list(polygons.values())


def label_polygons(labels: np.ndarray) -> list[tuple[int, list[np.ndarray]]]:
    """``(label, [outer, hole, ...])`` for every connected region of every non-zero label."""
    labels = np.asarray(labels)
    out = []
    for value in np.unique(labels):
        if value == 0:
            continue
        out.extend((int(value), rings) for rings in mask_polygons(labels == value))
    return out
