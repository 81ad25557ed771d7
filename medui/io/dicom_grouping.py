"""Grouping DICOM frames into stacks: by series, orientation and size, sorted along the slice normal;
several frames at one position (echoes, phases) and each mosaic file become stacks of their own."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from medui.io.geometry import FrameGeom, sort_frames
from medui.io.mosaic import volume_labels

if TYPE_CHECKING:
    from medui.io.dicom import Instance


@dataclass
class Frame:
    inst: Instance
    index: int

    @property
    def geom(self) -> FrameGeom:
        return self.inst.geoms[self.index]


def _stack_key(inst: Instance, g: FrameGeom) -> tuple[Any, ...]:
    ds = inst.ds
    iop = tuple(round(v, 3) for v in g.orientation) if g.orientation else None
    key: tuple[Any, ...] = (str(ds.get("SeriesInstanceUID", inst.src.name)), iop, int(ds.Rows), int(ds.Columns),
                  int(ds.get("SamplesPerPixel", 1) or 1))
    if inst.n_frames > 1 or g.position is None or inst.mosaic is not None:
        key += (inst.src.name,)  # a multi-frame object or mosaic, or an image without position, stands alone
    return key


def group(instances: Sequence[Instance]) -> list[list[Frame]]:
    """Frames grouped by series, orientation and size, each group sorted along its normal."""
    groups: dict[tuple[Any, ...], list[Frame]] = defaultdict(list)
    for inst in instances:
        for i, g in enumerate(inst.geoms):
            groups[_stack_key(inst, g)].append(Frame(inst, i))
    stacks = []
    for frames in groups.values():
        stacks.extend(_split_duplicates(frames))
    _label_mosaic_volumes(stacks)
    return stacks


def _label_mosaic_volumes(stacks: list[list[Frame]]) -> None:
    """Each mosaic file is a volume of its own (a b-value, a time point): 'volume k of N' in order."""
    at = [i for i, s in enumerate(stacks) if s[0].inst.mosaic is not None]
    insts = [stacks[i][0].inst for i in at]
    labels, order = volume_labels([(str(i.ds.get("SeriesInstanceUID", "")), _instance_number(Frame(i, 0)))
                                   for i in insts])
    moved = [stacks[at[j]] for j in order]
    for i, inst, label, stack in zip(at, insts, labels, moved, strict=True):
        inst.label, stacks[i] = label, stack


def _instance_number(f: Frame) -> float:
    try:
        return float(f.inst.ds.get("InstanceNumber", 0) or 0) + f.index / 10000.0
    except (TypeError, ValueError):
        return f.index / 10000.0


def _split_duplicates(frames: list[Frame]) -> list[list[Frame]]:
    """Order frames; several frames at one position (echoes, phases) become separate stacks."""
    order = sort_frames([f.geom for f in frames], [_instance_number(f) for f in frames])
    frames = [frames[i] for i in order]
    if frames[0].geom.position is None:
        return [frames]
    buckets: dict[tuple[float, ...], list[Frame]] = defaultdict(list)
    for f in frames:
        buckets[tuple(round(v, 2) for v in f.geom.position)].append(f)  # type: ignore[union-attr]
    depth = max(len(b) for b in buckets.values())
    if depth == 1:
        return [frames]
    stacks = []
    for k in range(depth):
        stack = [b[k] for b in buckets.values() if len(b) > k]
        stack = [stack[i] for i in sort_frames([f.geom for f in stack], [_instance_number(f) for f in stack])]
        stacks.append(stack)
    return stacks
