"""Grouping DICOM frames into stacks: by series, orientation and size, sorted along the slice normal;
several frames at one position (echoes, phases) and each mosaic file become stacks of their own.

Frames are never Python objects one by one: a stack is arrays (which instance, which frame, its
geometry), so a multi-frame object of a million frames is grouped and sorted by numpy in one go.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from medui.io.geometry import FrameTable, normal_of, sort_order
from medui.io.mosaic import volume_labels

if TYPE_CHECKING:
    from medui.io.dicom import Instance

# A stack whose frames lie at fewer positions than this many frames each (echoes, phases) is split
# into that many stacks; above it (a cine of thousands of phases, a hostile header) it stays one
# stack in acquisition order: thousands of one-frame series would help nobody.
MAX_SPLIT = 256


@dataclass
class Stack:
    """Frames of one stack, slot by slot: `insts[owner[k]]` holds slot k as its frame `frame[k]`
    (a tile number for a mosaic); `table` has the slots' geometry. `insts` are the instances the
    slots use, in the order they first appear."""

    insts: list[Instance]
    owner: np.ndarray
    frame: np.ndarray
    table: FrameTable

    def __len__(self) -> int:
        return len(self.owner)

    @property
    def first(self) -> Instance:
        return self.insts[int(self.owner[0])]

    def take(self, index: np.ndarray) -> Stack:
        """The slots at `index` (integers or a boolean mask), with only the instances they use."""
        owner = self.owner[index]
        used, first = np.unique(owner, return_index=True)
        used = used[np.argsort(first, kind="stable")]  # in order of first appearance
        remap = np.empty(len(self.insts), np.intp)
        remap[used] = np.arange(len(used))
        return Stack([self.insts[int(u)] for u in used], remap[owner], self.frame[index], self.table.take(index))

    def slots_of(self) -> list[np.ndarray]:
        """For each instance (in `insts` order), the slots it fills."""
        order = np.argsort(self.owner, kind="stable")
        bounds = np.searchsorted(self.owner[order], np.arange(len(self.insts) + 1))
        return [order[bounds[j]:bounds[j + 1]] for j in range(len(self.insts))]

    def tie_break(self) -> np.ndarray:
        """Instance number, then frame: the order of frames at one position."""
        numbers = np.array([_instance_number(i) for i in self.insts], float)
        tie: np.ndarray = numbers[self.owner] + self.frame / 10000.0
        return tie


def _instance_key(inst: Instance) -> tuple[Any, ...]:
    ds = inst.ds
    return (str(ds.get("SeriesInstanceUID", inst.src.name)), int(ds.Rows), int(ds.Columns),
            int(ds.get("SamplesPerPixel", 1) or 1))


def _by_orientation(table: FrameTable) -> list[tuple[tuple[float, ...] | None, np.ndarray]]:
    """The frames of an instance per orientation (rounded to 1e-3): (orientation or None, frames)."""
    n = len(table)
    o = table.orientation
    if n == 1 or (o.shape[0] > 1 and o.strides[0] == 0):
        first = o[0].tolist()
        known = all(math.isfinite(v) for v in first)
        return [(tuple(round(v, 3) for v in first) if known else None, np.arange(n))]
    rounded = np.where(np.isfinite(o), np.round(o, 3) + 0.0, np.inf)
    uniq, where, inverse = np.unique(rounded, axis=0, return_index=True, return_inverse=True)
    out = []
    for u in np.argsort(where, kind="stable"):
        row = uniq[u]
        out.append((None if not np.isfinite(row).all() else tuple(float(v) for v in row),
                    np.nonzero(inverse.ravel() == u)[0]))
    return out


def group(instances: Sequence[Instance]) -> list[Stack]:
    """Frames grouped by series, orientation and size, each group sorted along its normal."""
    groups: dict[tuple[Any, ...], list[tuple[Instance, np.ndarray]]] = defaultdict(list)
    for inst in instances:
        base = _instance_key(inst)
        alone = inst.n_frames > 1 or inst.mosaic is not None or not np.isfinite(inst.geoms.position[0]).all()
        for iop, frames in _by_orientation(inst.geoms):
            # a multi-frame object or mosaic, or an image without position, stands alone
            key = (base[0], iop, *base[1:]) + ((inst.src.name,) if alone else ())
            groups[key].append((inst, frames))
    stacks = []
    for parts in groups.values():
        insts = [inst for inst, _ in parts]
        stack = Stack(insts, np.concatenate([np.full(len(f), j, np.intp) for j, (_, f) in enumerate(parts)]),
                      np.concatenate([f for _, f in parts]),
                      FrameTable.concat([inst.geoms if len(f) == len(inst.geoms) else inst.geoms.take(f)
                                         for inst, f in parts]))
        stacks.extend(_split_duplicates(stack))
    _label_mosaic_volumes(stacks)
    return stacks


def _label_mosaic_volumes(stacks: list[Stack]) -> None:
    """Each mosaic file is a volume of its own (a b-value, a time point): 'volume k of N' in order."""
    at = [i for i, s in enumerate(stacks) if s.first.mosaic is not None]
    insts = [stacks[i].first for i in at]
    labels, order = volume_labels([(str(i.ds.get("SeriesInstanceUID", "")), _instance_number(i)) for i in insts])
    moved = [stacks[at[j]] for j in order]
    for i, inst, label, stack in zip(at, insts, labels, moved, strict=True):
        inst.label, stacks[i] = label, stack


def _instance_number(inst: Instance) -> float:
    try:
        return float(inst.ds.get("InstanceNumber", 0) or 0)
    except (TypeError, ValueError):
        return 0.0


def _sorted(stack: Stack) -> Stack:
    order = sort_order(stack.table, stack.tie_break())
    return stack if np.array_equal(order, np.arange(len(stack))) else stack.take(order)


def _split_duplicates(stack: Stack) -> list[Stack]:
    """Order frames; several frames at one position (echoes, phases) become separate stacks."""
    stack = _sorted(stack)
    pos = stack.table.position
    n = len(stack)
    if not np.isfinite(pos[0]).all() or n == 1:
        return [stack]
    if pos.strides[0] == 0:  # every frame at one position
        return [stack]
    if stack.table.positioned:  # sorted along the normal: gaps over 0.02 mm leave no two frames at one position
        proj = pos @ normal_of(stack.table.orientation[0])  # (positions are compared rounded to 0.01 mm)
        if bool(np.all(np.diff(proj) > 0.02)):
            return [stack]
    rounded = np.ascontiguousarray(np.where(np.isfinite(pos), np.round(pos, 2) + 0.0, np.inf))
    keys = rounded.view(np.dtype((np.void, rounded.dtype.itemsize * 3))).ravel()
    _, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
    depth = int(counts.max())
    if depth == 1 or depth > MAX_SPLIT:
        return [stack]
    # rank of each frame among the frames at its position, in sorted order
    by_position = np.argsort(inverse, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.empty(n, np.intp)
    rank[by_position] = np.arange(n) - starts[inverse[by_position]]
    return [_sorted(stack.take(np.nonzero(rank == k)[0])) for k in range(depth)]
