"""Frames decoded ahead (`medui.io.prefetch`) as the `Decoder` (`medui.io.parallel`) finds them: where
each one is, and series volumes that take a whole staging volume over instead of copying it."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from medui.io.parallel import Task, _Volume


@dataclass(frozen=True)
class Staged:
    """Where a file's one decoded frame already is: a slot of a staging volume, written by
    `write_frames` with this rescale slope and intercept (exactly what decoding it now would write)."""

    volume: int
    slot: int
    slope: float
    intercept: float


def mark_staged(staged: dict[int, Staged], tasks: list[Task]) -> list[Task]:
    """Tasks whose file's frame was staged with the rescale their targets want copy it from there."""
    from medui.io.sources import SourceFile

    for task in tasks:
        st = staged.get(task.index)
        if st is not None and all((t[0], t[2], t[3]) == (0, st.slope, st.intercept)
                                  for targets in task.targets.values() for t in targets):
            task.staged, task.src, task.hint = st, SourceFile(task.src.name), None
    return tasks


def adopt(volumes: list[_Volume], tasks: list[Task], stats: dict[str, int]) -> list[Task]:
    """Output volumes whose every slot was staged in one staging volume of their very shape take
    that volume over, its frames put in slot order in place (no copy into fresh memory); the
    tasks left to run."""
    by_volume: dict[int, list[Task]] = {}
    for task in tasks:
        for v in task.targets:
            by_volume.setdefault(v, []).append(task)
    adopted: set[int] = set()
    for v, group in by_volume.items():
        vol = volumes[v]
        scratch = {t.staged.volume for t in group if t.staged is not None}
        if len(scratch) != 1 or any(t.staged is None or len(t.targets) != 1 or len(t.targets[v]) != 1
                                    for t in group):
            continue
        source = volumes[scratch.pop()]
        order = np.full(vol.shape[0], -1)
        for t in group:
            order[t.targets[v][0][1]] = t.staged.slot  # type: ignore[union-attr]
        if source.shape != vol.shape or source.file is None or vol.file is None or (order < 0).any() \
                or len(np.unique(order)) != len(order):
            continue
        permute(source.file.whole(), order)
        os.close(vol.file.fd)
        vol.file, vol.array, source.file = source.file, None, None
        vol.written[:] = True
        adopted.update(id(t) for t in group)
        stats["in_workers"] += len(group)  # decoded there, ahead
    return [t for t in tasks if id(t) not in adopted]


def permute(arr: np.ndarray, order: np.ndarray) -> None:
    """`arr[:] = arr[order]` in place, one frame of extra memory (`order` a permutation)."""
    done = np.zeros(len(order), bool)
    for start in range(len(order)):
        if done[start] or order[start] == start:
            done[start] = True
            continue
        keep = arr[start].copy()
        j = start
        while order[j] != start:
            arr[j] = arr[order[j]]
            done[j] = True
            j = int(order[j])
        arr[j] = keep
        done[j] = True
