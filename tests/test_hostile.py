"""The hostile-input corpus (tests/hostile_corpus.py) through the loader and the CLI: nothing crashes,
hangs or is silently dropped, good series still load, and memory stays within the load's budget."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from medui.io.loader import LoadResult, load
from medui.io.sources import Limits, expand, printable
from tests.hostile_corpus import Case, build, cases
from tests.synth import phantom_volume, write_series

ROOT = Path(__file__).resolve().parents[1]
MiB = 1024**2
BUDGET_MB = 16
PER_CASE_SECONDS = 3.0
CASES = cases()


def _limits() -> Limits:
    return Limits(max_load_bytes=BUDGET_MB * MiB, header_seconds=2.0)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("hostile")
    return {case.name: path for case, path in build(folder, CASES)}


@pytest.fixture(scope="module")
def good_series(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("good") / "good_ct"
    write_series(folder, phantom_volume(5, 24, 20))
    return folder


def _accounted(result: LoadResult, path: Path, limits: Limits) -> list[str]:
    """Files of `path` (as expanded) that are neither in a series nor reported: must be none."""
    files, _ = expand([path], limits)
    used = {f for s in result.series for f in s.files} | {k.file for k in result.skipped}
    return [f.name for f in files if f.name not in used and f.name + ".gz" not in used  # .dcm.gz: inflated
            and not any(f.name.startswith(k.file + "/") for k in result.skipped)]


def test_the_corpus_covers_every_category_with_enough_cases():
    by_category: dict[str, int] = {}
    for case in CASES:
        by_category[case.category] = by_category.get(case.category, 0) + 1
    assert len(CASES) >= 150, by_category
    assert set(by_category) >= {"dicom_truncation", "dicom_values", "nifti", "raster", "zip", "gzip", "names"}
    assert len({c.name for c in CASES}) == len(CASES)
    assert all(len(c.data) < 4 * MiB for c in CASES), "cases stay small"


@pytest.mark.parametrize("case", CASES, ids=[c.name.encode("unicode_escape").decode()[:60] for c in CASES])
def test_each_case_alone_is_loaded_or_reported_quickly(case: Case, corpus):
    path = corpus[case.name]
    limits = _limits()
    start = time.perf_counter()
    result = load([path], limits)  # nothing may escape
    seconds = time.perf_counter() - start
    assert seconds < PER_CASE_SECONDS, f"{case.name} took {seconds:.1f} s"
    assert result.series or result.skipped, "silently dropped"
    assert all(k.reason.strip() for k in result.skipped)
    assert not _accounted(result, path, limits)
    if case.expect == "load":
        assert result.series, [k.reason for k in result.skipped]
    elif case.expect == "skip":
        assert result.skipped and not result.series, [s.summary() for s in result.series]


def test_all_cases_mixed_with_one_good_series_in_one_load(corpus, good_series, caplog):
    caplog.set_level(logging.DEBUG)
    start = time.perf_counter()
    result = load([good_series, *corpus.values()], Limits(max_load_bytes=64 * MiB, header_seconds=2.0))
    seconds = time.perf_counter() - start
    assert seconds < 60
    good = [s for s in result.series if s.files[0].startswith("good_ct/")]
    assert len(good) == 1 and good[0].n_slices == 5
    np.testing.assert_array_equal(good[0].pixels.shape, (5, 24, 20))
    seen = {f for s in result.series for f in s.files} | {k.file for k in result.skipped}
    shown = {name: printable(name) for name in corpus}  # names are shown without control characters
    missing = [name for name, show in shown.items()
               if not any(f == show or f.startswith(show + "/") or f + ".gz" == show for f in seen)]
    assert not missing, missing
    assert "Hostile^Case" not in caplog.text and "HOSTILE-0" not in caplog.text


def test_cli_info_json_on_a_sample_of_the_corpus(corpus, good_series):
    sample = [corpus[c.name] for c in CASES[::9]]
    env = {**os.environ, "MEDUI_MAX_LOAD_MB": str(BUDGET_MB), "MEDUI_HEADER_TIMEOUT_S": "2",
           "PYTHONWARNINGS": "ignore"}
    run = subprocess.run([sys.executable, "-m", "medui", "info", "--json", str(good_series), *map(str, sample)],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "Traceback" not in run.stderr
    doc = json.loads(run.stdout)
    assert any(s["files"][0].startswith("good_ct/") for s in doc["series"])
    reported = {s["files"][0] for s in doc["series"]} | {k["file"] for k in doc["skipped"]}
    assert len(reported) >= len(sample) // 2


_PEAK = """
import json, sys
sys.path.insert(0, {root!r})
from medui.io.loader import load
paths = sys.argv[1:]
result = load(paths)
# VmHWM, not ru_maxrss: after subprocess's vfork+exec that would still hold pytest's own peak
hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({{"rss_mb": hwm / 1024, "series": len(result.series), "skipped": len(result.skipped)}}))
"""


def _peak(paths: list[Path], budget_mb: int) -> dict[str, float]:
    env = {**os.environ, "MEDUI_MAX_LOAD_MB": str(budget_mb), "MEDUI_HEADER_TIMEOUT_S": "2",
           "PYTHONWARNINGS": "ignore"}
    run = subprocess.run([sys.executable, "-c", _PEAK.format(root=str(ROOT)), *map(str, paths)], env=env,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    out: dict[str, float] = json.loads(run.stdout.strip().splitlines()[-1])
    return out


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads VmHWM from /proc")
def test_peak_memory_of_the_whole_corpus_stays_within_the_budget(corpus, good_series):
    # the baseline reads one good file of each reader, so that what differs is not the libraries imported
    goods = [corpus[name] for name in ("raster000_good.png", "nifti000_good.nii", "nifti001_good.nii.gz",
                                       "zip000_good.zip", "gzip000_good.dcm.gz")]
    baseline = _peak([good_series, *goods], BUDGET_MB)
    everything = _peak([good_series, *corpus.values()], BUDGET_MB)
    assert everything["series"] >= 1
    # inputs are read one at a time and every kept byte is charged: what the corpus adds over loading
    # one small series is the budget, plus buffers that are freed as each file is done
    assert everything["rss_mb"] - baseline["rss_mb"] < BUDGET_MB + 16, (baseline, everything)
