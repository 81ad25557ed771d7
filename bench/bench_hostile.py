"""Benchmark: the hostile-input corpus (tests/hostile_corpus.py) through the loader. Prints JSON.

    .venv/bin/python bench/bench_hostile.py [--budget-mb 16] [--hang-s 5] [--baseline-ref REF] [--repeats 2]
                                            [--frames-ref REF] [--frames-timeout-s 60]

Each category of the corpus runs in a fresh process (so its peak RSS is its own), case by case,
under a load budget of --budget-mb (MEDUI_MAX_LOAD_MB). Outcomes per case: loaded (a series came
out), reported (skipped with a reason), over_budget (reported because of a memory limit), crash (an
exception escaped `load`), hang (slower than --hang-s; it is not interrupted). Then the real
255-slice CT (../shared/data/ct-chest-covid-255, skipped when absent) is loaded in fresh processes
by this tree and, with --baseline-ref, by that commit of the repository (exported with `git archive`,
i.e. before the budget code path existed): wall time and peak RSS, medians of interleaved repeats.

`many_frames`: multi-frame objects with many tiny frames (native 1x1 frames: 200 000 and 2 000 000,
200 000 placed by GridFrameOffsetVector, 5 000 with per-frame functional groups, 20 000 RLE frames),
each loaded in a fresh process with MEDUI_MAX_FRAMES out of the way and a 4 GiB budget, by this tree
and, with --frames-ref, by that commit (before the frames were handled as arrays): wall time of `load`,
peak RSS, and what came out; a load past --frames-timeout-s is killed and reported as such.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REAL_CT = ROOT.parent / "shared" / "data" / "ct-chest-covid-255"
def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM). Not ru_maxrss: after a vfork+exec (how subprocess
    starts children) that still holds the parent's peak."""
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


_OVER = ("memory budget", "would need", "memory limit", "MEDUI_MAX_IMAGE_MB", "more pixels than")


def _child_category(folder: Path, category: str, hang_s: float) -> dict[str, object]:
    sys.path.insert(0, str(ROOT))
    from medui.io.loader import load

    names = json.loads((folder / "manifest.json").read_text())[category]  # not cases(): it builds them all
    idle_mb = peak_rss_mb()
    counts = {"loaded": 0, "reported": 0, "over_budget": 0, "crash": 0, "hang": 0}
    worst_s, worst_case, crashes = 0.0, "", []
    for name in names:
        start = time.perf_counter()
        try:
            result = load([folder / name])
        except BaseException as exc:  # counted: that is what this measures
            counts["crash"] += 1
            crashes.append(f"{name!r}: {type(exc).__name__}")
            continue
        seconds = time.perf_counter() - start
        if seconds > worst_s:
            worst_s, worst_case = seconds, name
        if seconds > hang_s:
            counts["hang"] += 1
        elif result.series:
            counts["loaded"] += 1
        elif any(word in k.reason for k in result.skipped for word in _OVER):
            counts["over_budget"] += 1
        elif result.skipped:
            counts["reported"] += 1
        else:
            counts["crash"] += 1  # silently dropped counts as a failure
            crashes.append(f"{name!r}: silently dropped")
    return {"cases": sum(counts.values()), **counts, "worst_seconds": round(worst_s, 3),
            "worst_case": worst_case.encode("unicode_escape").decode()[:60],
            "peak_rss_mb": round(peak_rss_mb()),
            "idle_rss_mb": round(idle_mb), "failures": crashes}


def _child_ct(src: Path) -> dict[str, float]:
    sys.path.insert(0, str(src))
    from medui.io.loader import load

    start = time.perf_counter()
    result = load([REAL_CT])
    seconds = time.perf_counter() - start
    assert len(result.series) == 1 and result.series[0].n_slices == 255, result.skipped[:3]
    return {"seconds": seconds, "rss_mb": peak_rss_mb()}


def _child_frames(src: Path, path: Path) -> dict[str, object]:
    sys.path.insert(0, str(src))
    from medui.io.loader import load

    start = time.perf_counter()
    result = load([path])
    return {"seconds": round(time.perf_counter() - start, 3), "rss_mb": round(peak_rss_mb()),
            "series_slices": [s.n_slices for s in result.series][:4],
            "skipped": [k.reason[:80] for k in result.skipped][:1]}


def _frame_cases(folder: Path) -> dict[str, Path]:
    import numpy as np
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence
    from pydicom.uid import RLELossless

    from tests.hostile_corpus import _encapsulated, _frames, _offsets

    def per_frame(n: int) -> Callable[[Dataset], None]:
        def mutate(ds: Dataset) -> None:
            groups = []
            for k in range(n):
                fg, pp = Dataset(), Dataset()
                pp.ImagePositionPatient = [0, 0, float(k)]
                fg.PlanePositionSequence = Sequence([pp])
                groups.append(fg)
            ds.PerFrameFunctionalGroupsSequence = Sequence(groups)
        return mutate

    rle = struct.pack("<16I", 1, 64, *([0] * 14)) + b"\x00\x07"
    made = {"native_200k_1x1": _frames(200_000), "native_2m_1x1": _frames(2_000_000),
            "native_200k_grid_offsets": _frames(200_000, _offsets(np.arange(200_000) * 0.5)),
            "enhanced_5000_per_frame_groups": _frames(5000, per_frame(5000)),
            "rle_20000_frames": _frames(20_000, syntax=RLELossless, pixel=_encapsulated([rle] * 20_000))}
    out = {}
    for name, data in made.items():
        out[name] = folder / f"{name}.dcm"
        out[name].write_bytes(data)
    return out


def _many_frames(frames_ref: str | None, timeout_s: float) -> dict[str, object]:
    trees = {"this_tree": ROOT}
    tmp = tempfile.TemporaryDirectory()
    if frames_ref:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", frames_ref, "medui"], capture_output=True,
                                 check=True).stdout
        (Path(tmp.name) / "tree").mkdir()
        subprocess.run(["tar", "-x", "-C", str(Path(tmp.name) / "tree")], input=archive, check=True)
        trees[f"before_{frames_ref}"] = Path(tmp.name) / "tree"
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cases = _frame_cases(Path(tmp.name))
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "MEDUI_MAX_FRAMES": "100000000", "MEDUI_MAX_LOAD_MB": "4096",
           "MEDUI_MAX_IMAGE_MB": "4096"}
    out: dict[str, object] = {}
    for case, path in cases.items():
        out[case] = {name: _run_child(["--child-frames", str(src), str(path)], {**env, "PYTHONPATH": str(src)},
                                      cwd=src, timeout=timeout_s) for name, src in trees.items()}
    tmp.cleanup()
    return out


def _run_child(args: list[str], env: dict[str, str], cwd: Path = ROOT, timeout: float = 600) -> dict[str, object]:
    """This script in a fresh process; `cwd` is where its decode workers (forkserver) import medui from."""
    try:
        run = subprocess.run([sys.executable, str(Path(__file__).resolve()), *args], env=env, capture_output=True,
                             text=True, timeout=timeout, cwd=cwd)
    except subprocess.TimeoutExpired:
        return {"error": f"killed after {timeout:g} s (a hang)"}
    if run.returncode != 0:
        return {"error": run.stderr.strip().splitlines()[-1] if run.stderr.strip() else f"rc {run.returncode}"}
    out: dict[str, object] = json.loads(run.stdout.strip().splitlines()[-1])
    return out


def _real_ct(baseline_ref: str | None, repeats: int) -> dict[str, object]:
    if not REAL_CT.is_dir():
        return {"skipped": f"{REAL_CT} is absent"}
    trees = {"this_tree": ROOT}
    tmp = tempfile.TemporaryDirectory()
    if baseline_ref:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", baseline_ref, "medui"], capture_output=True,
                                 check=True).stdout
        subprocess.run(["tar", "-x", "-C", tmp.name], input=archive, check=True)
        trees[f"baseline_{baseline_ref}"] = Path(tmp.name)
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    samples: dict[str, list[dict[str, object]]] = {name: [] for name in trees}
    for _ in range(repeats):
        for name, src in trees.items():  # interleaved, so both see the same page cache and load
            samples[name].append(_run_child(["--child-ct", str(src)], {**env, "PYTHONPATH": str(src)}, cwd=src))
    out: dict[str, object] = {}
    for name, runs in samples.items():
        good = [r for r in runs if "error" not in r]
        out[name] = {"seconds": round(statistics.median(float(r["seconds"]) for r in good), 2),  # type: ignore[arg-type]
                     "rss_mb": round(statistics.median(float(r["rss_mb"]) for r in good)),  # type: ignore[arg-type]
                     "runs": len(good)} if good else {"error": runs[0].get("error")}
    tmp.cleanup()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget-mb", type=float, default=16)
    parser.add_argument("--hang-s", type=float, default=5.0)
    parser.add_argument("--baseline-ref", default=None, help="a commit to compare the real CT load with")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--child-category", nargs=2, metavar=("FOLDER", "CATEGORY"), help=argparse.SUPPRESS)
    parser.add_argument("--frames-ref", default=None, help="a commit to compare the many-frame loads with")
    parser.add_argument("--frames-timeout-s", type=float, default=60.0)
    parser.add_argument("--only-frames", action="store_true", help="only the many-frame section")
    parser.add_argument("--child-ct", metavar="SRC", help=argparse.SUPPRESS)
    parser.add_argument("--child-frames", nargs=2, metavar=("SRC", "FILE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_frames:
        print(json.dumps(_child_frames(Path(args.child_frames[0]), Path(args.child_frames[1]))))
        return
    if args.child_category:
        print(json.dumps(_child_category(Path(args.child_category[0]), args.child_category[1], args.hang_s)))
        return
    if args.child_ct:
        print(json.dumps(_child_ct(Path(args.child_ct))))
        return
    sys.path.insert(0, str(ROOT))
    from tests.hostile_corpus import build

    if args.only_frames:
        print(json.dumps({"many_frames": _many_frames(args.frames_ref, args.frames_timeout_s)}, indent=2))
        return

    env = {**os.environ, "MEDUI_MAX_LOAD_MB": str(args.budget_mb), "MEDUI_HEADER_TIMEOUT_S": "2",
           "PYTHONWARNINGS": "ignore"}
    with tempfile.TemporaryDirectory() as tmp:
        pairs = build(Path(tmp))
        categories = list(dict.fromkeys(case.category for case, _ in pairs))
        manifest = {c: [case.name for case, _ in pairs if case.category == c] for c in categories}
        (Path(tmp) / "manifest.json").write_text(json.dumps(manifest))
        del pairs
        start = time.perf_counter()
        per_category = {c: _run_child(["--child-category", tmp, c, "--hang-s", str(args.hang_s)], env)
                        for c in categories}
        corpus_seconds = time.perf_counter() - start
    totals = {k: sum(int(v.get(k, 0)) for v in per_category.values())  # type: ignore[call-overload]
              for k in ("cases", "loaded", "reported", "over_budget", "crash", "hang")}
    print(json.dumps({"budget_mb": args.budget_mb, "hang_s": args.hang_s, "totals": totals,
                      "corpus_seconds": round(corpus_seconds, 1), "categories": per_category,
                      "real_ct_255": _real_ct(args.baseline_ref, args.repeats),
                      "many_frames": _many_frames(args.frames_ref, args.frames_timeout_s)}, indent=2))


if __name__ == "__main__":
    main()
