"""Benchmark: N users loading the 255-slice CT on one server at once. Prints JSON.

    .venv/bin/python bench/bench_sessions.py [--sessions 1 2 4 8] [--idle 30] [--after 60]

One headless chromium, a context per user, each uploading the real 255-slice JPEG Lossless chest CT
from ../shared/data/ct-chest-covid-255 (a synthetic compressed series when absent). Two kinds of
round: 'same' (every user opens the same study: the store decodes it once) and 'distinct' (each
user a copy that differs in one private tag, so nothing is shared and the decode pool is what is
measured); and 'sequential': the distinct copies loaded one after another by one user, the
reference for the concurrent max time. For each round: time from the upload to the loaded
summary and to the first image, per session (median, max); the server's resident memory (its main
process; with its decode workers in 'rss_total') before, at the peak and `--after` seconds after
the last session closed (the store drops series unused for `--idle` seconds).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

REAL = ROOT.parent / "shared" / "data" / "ct-chest-covid-255"


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return 0.0
    return 0.0


def _tree_rss_mb(pid: int) -> float:
    """The process and its children (decode workers, the forkserver)."""
    total = _rss_mb(pid)
    for child in Path(f"/proc/{pid}/task").glob("*/children"):
        for c in child.read_text().split():
            total += _tree_rss_mb(int(c))
    return total


def _copies(n: int, work: Path) -> list[list[Path]]:
    """`n` copies of the study, each differing in one private tag (so their content keys differ)."""
    import pydicom

    if REAL.is_dir():
        source = sorted(REAL.iterdir())
    else:
        from tests.synth import jpeg_lossless_copy, phantom_volume, write_series

        raw = write_series(work / "raw", phantom_volume(120, 512, 512, seed=5))
        (work / "jpeg").mkdir()
        source = [jpeg_lossless_copy(p, work / "jpeg" / p.name) for p in raw]
    out = [source]
    for k in range(1, n):
        folder = work / f"copy{k}"
        folder.mkdir(parents=True)
        files = []
        for p in source:
            ds = pydicom.dcmread(p)
            ds.private_block(0x0099, "MEDUI BENCH", create=True).add_new(0x01, "LO", f"copy {k}")
            ds.save_as(folder / p.name)
            files.append(folder / p.name)
        out.append(files)
    return out


async def _session(browser, url: str, files: list[Path], out: list[dict], start: asyncio.Event) -> None:
    ctx = await browser.new_context(viewport={"width": 1440, "height": 900})
    page = await ctx.new_page()
    await page.goto(url, wait_until="networkidle")
    await page.get_by_text("Upload DICOM files, a folder").wait_for(timeout=120_000)
    out.append({"ctx": ctx})
    await start.wait()
    t0 = time.perf_counter()
    await page.locator("input[type=file]").first.set_input_files([str(p) for p in files])
    summary = page.get_by_test_id("stMainBlockContainer").get_by_text("Loaded 1 series").first
    await summary.wait_for(timeout=600_000)
    t_loaded = time.perf_counter() - t0
    # the reader's voxels have arrived (or the classic viewer's image is there)
    await page.locator("[data-testid=reader-loading][data-done='1'], .js-plotly-plot image").first.wait_for(
        timeout=600_000)
    out.append({"loaded_s": t_loaded, "image_s": time.perf_counter() - t0,
                "shared": "not read again" in await summary.inner_text()})


async def _round(browser, url: str, studies: list[list[Path]], pid: int, after_s: float,
                 concurrent: bool) -> dict[str, object]:
    slots: list[dict] = []
    before = _rss_mb(pid)
    peak = [before, _tree_rss_mb(pid)]
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            peak[0], peak[1] = max(peak[0], _rss_mb(pid)), max(peak[1], _tree_rss_mb(pid))
            time.sleep(0.2)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    t0 = time.perf_counter()
    if concurrent:  # every page open and ready first, then all uploads at once
        go = asyncio.Event()
        tasks = [asyncio.create_task(_session(browser, url, files, slots, go)) for files in studies]
        while sum("ctx" in s for s in slots) < len(studies):
            await asyncio.sleep(0.1)
        t0 = time.perf_counter()
        go.set()
        await asyncio.gather(*tasks)
    else:
        for files in studies:
            go = asyncio.Event()
            go.set()
            await _session(browser, url, files, slots, go)
    wall = time.perf_counter() - t0
    for s in slots:
        if "ctx" in s:
            await s["ctx"].close()
    closed = time.perf_counter()
    await asyncio.sleep(after_s)
    stop.set()
    watcher.join()
    results = [s for s in slots if "loaded_s" in s]
    loaded = [r["loaded_s"] for r in results]
    image = [r["image_s"] for r in results]
    return {"sessions": len(studies), "wall_s": round(wall, 2),
            "loaded_s": {"median": round(statistics.median(loaded), 2), "max": round(max(loaded), 2)},
            "first_image_s": {"median": round(statistics.median(image), 2), "max": round(max(image), 2)},
            "shared_loads": sum(bool(r["shared"]) for r in results),
            "rss_mb": {"before": round(before), "peak": round(peak[0]),
                       f"after_{int(time.perf_counter() - closed)}s": round(_rss_mb(pid))},
            "rss_total_peak_mb": round(peak[1])}


async def _bench(url: str, pid: int, studies: list[list[Path]], args: argparse.Namespace) -> dict[str, object]:
    from playwright.async_api import async_playwright

    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    report: dict[str, object] = {"baseline_rss_mb": round(_rss_mb(pid))}
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=exe, headless=True,
                                           args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        rounds = []
        for n in args.sessions:
            for kind, chosen in (("same", [studies[0]] * n), ("distinct", studies[:n])):
                if n == 1 and kind == "same":
                    continue
                rounds.append({"kind": kind, **await _round(browser, url, chosen, pid, args.after, True)})
                print(json.dumps(rounds[-1]), file=sys.stderr, flush=True)
        n_max = max(args.sessions)
        seq = await _round(browser, url, studies[:n_max], pid, args.after, False)
        report["sequential"] = seq
        report["rounds"] = rounds
        worst = next((r for r in rounds if r["kind"] == "distinct" and r["sessions"] == n_max), None)
        if worst and n_max > 1:
            report["ratio_max_concurrent_to_sequential_total"] = round(
                worst["loaded_s"]["max"] / seq["wall_s"], 2)  # type: ignore[index]
        await browser.close()
    return report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sessions", type=int, nargs="+", default=[1, 2, 4, 8])
    ap.add_argument("--idle", type=float, default=30.0)
    ap.add_argument("--after", type=float, default=60.0)
    ap.add_argument("--budget-mb", type=float, default=0.0, help="MEDUI_CACHE_MB (default: the server's own)")
    args = ap.parse_args()

    from tests.conftest import launch_server, stop_server

    work = Path(tempfile.mkdtemp(prefix="medui-bench-sessions-"))
    studies = _copies(max(args.sessions), work / "studies")
    env = {"MEDUI_CACHE_IDLE_S": str(args.idle), "MEDUI_DATA_ROOTS": str(work)}
    if args.budget_mb:
        env["MEDUI_CACHE_MB"] = str(args.budget_mb)
    proc, info = launch_server(work / "server", **env)
    report: dict[str, object] = {"series": str(REAL) if REAL.is_dir() else "synthetic 120x512x512 JPEG Lossless",
                                 "files": len(studies[0]), "idle_s": args.idle}
    try:
        report.update(asyncio.run(_bench(info["url"], proc.pid, studies, args)))
    finally:
        stop_server(proc)
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
