"""Benchmark: reading the 255-slice chest CT in the browser, today's server-rendered (Plotly) path
against the in-browser reader, in one run on one server. Prints JSON.

    .venv/bin/python bench/bench_viewer.py [--steps 50] [--ct ../shared/data/ct-chest-covid-255]

Headless Debian chromium (Playwright) opens the Viewer twice: `?viewer=classic` (every step is a
Streamlit rerun that sends a new picture) and the reader (the voxels come once over HTTP). For each:
time from upload to the first image; bytes sent to the browser for the series and per slice step
(Chrome DevTools Protocol: HTTP bodies as transferred plus websocket frames); latency of a slice
step (reader: a mouse-wheel step; classic: an ArrowRight on the slice slider, what it offers) and
of a window drag step (reader: a pointer move with the button down; classic: a step of the window
level slider), median and p95 over `--steps` steps, each measured in the page from the input
event to the `requestAnimationFrame` after the new picture is drawn; on Diagnose, an overlay
opacity change. Targets: slice step p95 <= 50 ms, window drag >= 30 updates/s, opacity change
<= 50 ms, bytes per series <= 1.2x the series' int16 volume compressed with zlib, 0 bytes per step.
Without the CT (other machines) a generated 255 x 512 x 512 series is used instead.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import zlib
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED_CT = ROOT.parent / "shared" / "data" / "ct-chest-covid-255"
SHADOW = "document.querySelector('[data-testid=stBidiComponentIsolated]').shadowRoot"

# In-page probes: t0 at the input event (capture phase), t1 = performance.now() in the animation
# frame after the new picture is on the canvas (reader: its 'reader-drawn' event; classic: the
# Plotly image's href changes).
PROBES = """
() => {
  window.__lat = []; window.__t0 = 0;
  const start = () => { window.__t0 = performance.now() };
  for (const ev of ['wheel', 'keydown', 'pointermove', 'input']) window.addEventListener(ev, start, true);
  const done = () => { const t0 = window.__t0; requestAnimationFrame(() => window.__lat.push(performance.now() - t0)) };
  window.__readerDone = done;
  const href = () => { const i = document.querySelector('.js-plotly-plot image'); return i && i.getAttribute('href') };
  let last = href();
  new MutationObserver(() => { const h = href(); if (h && h !== last) { last = h; done() } })
    .observe(document.body, { attributes: true, childList: true, subtree: true, attributeFilter: ['href'] });
}
"""
HOOK_READER = f"() => {SHADOW}.querySelector('[data-testid=reader]').addEventListener('reader-drawn', " \
              "() => window.__readerDone())"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _log(*what: object) -> None:
    print(time.strftime("%H:%M:%S"), *what, file=sys.stderr, flush=True)


def _stats(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    v = sorted(values)
    return {"n": len(v), "median_ms": round(statistics.median(v), 1),
            "p95_ms": round(v[min(len(v) - 1, int(round(0.95 * (len(v) - 1))))], 1),
            "per_s": round(1000.0 / statistics.mean(v), 1)}


class Bytes:
    """Bytes the browser receives: HTTP bodies as transferred and websocket frames (CDP Network)."""

    def __init__(self, page: Any) -> None:
        self.http = 0
        self.ws = 0
        self.voxels = 0  # of which the reader's /medui/volume/ chunks
        self.urls: dict[str, str] = {}
        self.cdp = page.context.new_cdp_session(page)
        self.cdp.send("Network.enable")
        self.cdp.on("Network.requestWillBeSent", lambda e: self.urls.__setitem__(e["requestId"], e["request"]["url"]))
        self.cdp.on("Network.loadingFinished", self._finished)
        self.cdp.on("Network.webSocketFrameReceived", lambda e: self._add("ws", self._frame(e)))

    @staticmethod
    def _frame(e: dict[str, Any]) -> int:
        r = e.get("response", {})
        data = r.get("payloadData", "")
        return len(data) * 3 // 4 if r.get("opcode") == 2 else len(data.encode())

    def _finished(self, e: dict[str, Any]) -> None:
        n = int(e.get("encodedDataLength", 0))
        self.http += n
        if "/medui/volume/" in self.urls.get(e["requestId"], ""):
            self.voxels += n

    def _add(self, what: str, n: int) -> None:
        setattr(self, what, getattr(self, what) + int(n))

    def reset(self) -> None:
        self.http = self.ws = self.voxels = 0

    @property
    def total(self) -> int:
        return self.http + self.ws


def _steps(page: Any, n: int, act: Any, timeout_s: float = 30.0) -> list[float]:
    """Run `act()` n times, each after the previous picture is drawn; the in-page latencies."""
    page.evaluate("() => { window.__lat = [] }")
    for k in range(n):
        act()
        deadline = time.time() + timeout_s
        while page.evaluate("() => window.__lat.length") <= k:
            if time.time() > deadline:
                raise TimeoutError(f"step {k + 1}: no new picture within {timeout_s} s")
            time.sleep(0.002)
    return [float(v) for v in page.evaluate("() => window.__lat")]


def _upload(page: Any, url: str, files: list[str], ready: str, meter: Bytes) -> tuple[float, int, int]:
    page.goto(url, wait_until="networkidle")
    page.get_by_text("Upload DICOM files, a folder").wait_for(timeout=60_000)
    page.evaluate(PROBES)
    meter.reset()
    t0 = time.perf_counter()
    page.locator("input[type=file]").first.set_input_files(files)
    page.locator(ready).first.wait_for(timeout=300_000)
    first = time.perf_counter() - t0
    _log("first image after", round(first, 2), "s")
    return first, meter.http, meter.ws


def classic(page: Any, url: str, files: list[str], steps: int, meter: Bytes) -> dict[str, Any]:
    first, _, _ = _upload(page, url + "/?viewer=classic", files, ".js-plotly-plot image", meter)
    page.wait_for_timeout(1500)
    series_bytes = meter.total
    slider = page.locator('[data-testid="stSlider"]').filter(has_text="Slice").get_by_role("slider")
    slider.focus()
    meter.reset()
    slice_lat = _steps(page, steps, lambda: page.keyboard.press("ArrowRight"))
    per_step = meter.total / steps
    _log("classic slice steps done")
    level = page.locator('[data-testid="stSlider"]').filter(has_text="Window level").get_by_role("slider")
    level.focus()
    window_lat = _steps(page, steps, lambda: page.keyboard.press("ArrowRight"))
    return {"first_image_s": round(first, 2), "bytes_per_series": series_bytes, "bytes_per_slice_step": round(per_step),
            "slice_step": _stats(slice_lat), "window_step": _stats(window_lat)}


def reader(page: Any, url: str, files: list[str], steps: int, meter: Bytes) -> dict[str, Any]:
    first, _, _ = _upload(page, url, files, "[data-testid=reader][data-first-image='1']", meter)
    page.locator("[data-testid=reader-loading][data-done='1']").wait_for(timeout=300_000)
    _log("reader: all slices in the browser")
    page.wait_for_timeout(1000)
    all_loaded, voxels = meter.total, meter.voxels
    page.evaluate(HOOK_READER)
    box = page.locator("[data-testid=reader] .stage").first.bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 3
    page.mouse.move(cx, cy)
    meter.reset()
    sign = [1]

    def wheel() -> None:
        page.mouse.wheel(0, 100 * sign[0])

    slice_lat = _steps(page, steps, wheel)
    per_step = meter.total / steps
    _log("reader slice steps done")
    page.mouse.down()
    pos = [cx, cy]

    def drag() -> None:
        pos[0] += 3
        page.mouse.move(pos[0], pos[1])

    t0 = time.perf_counter()
    window_lat = _steps(page, steps, drag)
    drag_rate = steps / (time.perf_counter() - t0)
    page.mouse.up()
    return {"first_image_s": round(first, 2), "bytes_until_all_slices": all_loaded, "bytes_voxels": voxels,
            "bytes_per_slice_step": round(per_step), "slice_step": _stats(slice_lat), "window_step": _stats(window_lat),
            "window_drag_updates_per_s_end_to_end": round(drag_rate, 1)}


def overlay(page: Any, url: str, image: str, steps: int) -> dict[str, Any]:
    """Diagnose: an overlay opacity change in the reader. On a 512 x 512 phantom radiograph with a
    lesion: the demo model's saliency maps are flat (nothing to overlay) on the real CT."""
    page.goto(url + "/diagnose", wait_until="networkidle")
    page.get_by_text("Upload a scan above").wait_for(timeout=120_000)
    page.locator("input[type=file]").first.set_input_files([image])
    _log("Diagnose: scoring")
    page.get_by_test_id("reader-overlay-title").first.wait_for(timeout=600_000)
    page.locator("[data-testid=reader-loading][data-done='1']").wait_for(timeout=300_000)
    _log("Diagnose: overlay shown")
    page.wait_for_timeout(1500)
    page.evaluate(PROBES)
    page.evaluate(HOOK_READER)
    value = [0.0]
    knob = page.get_by_test_id("reader-overlay-opacity").first

    def change() -> None:
        value[0] = 0.05 if value[0] >= 1 else value[0] + 0.05
        knob.evaluate("(e, v) => { e.value = String(v); "
                      "e.dispatchEvent(new Event('input', { bubbles: true, composed: true })) }", value[0])

    return {"opacity_change": _stats(_steps(page, steps, change)), "overlay_series": "512 x 512 phantom radiograph"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--ct", type=Path, default=SHARED_CT)
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    from medui.io.loader import load

    tmp = Path(tempfile.mkdtemp(prefix="bench-viewer-"))
    if args.ct.is_dir():
        files, source = sorted(str(p) for p in args.ct.iterdir()), str(args.ct.name)
    else:
        from tests.synth import phantom_volume, write_series

        files = [str(p) for p in write_series(tmp / "ct", phantom_volume(255, rows=512, cols=512, seed=1))]
        source = "generated 255 x 512 x 512"
    s = load(files).series[0]
    from medui.synthetic.phantoms import make_phantom, write_png

    phantom = str(tmp / "phantom.png")
    write_png(make_phantom(3, size=512, lesion=True), Path(phantom))
    int16 = np.rint(s.pixels).astype("<i2").tobytes()
    reference = len(zlib.compress(int16))
    port = _port()
    env = dict(os.environ, MEDUI_MODELS=str(tmp / "models"), MEDUI_JOBS=str(tmp / "jobs"))
    (tmp / "models").mkdir()
    for suffix in (".keras", ".json"):
        (tmp / "models" / f"demo-chest-phantom-v1{suffix}").write_bytes(
            (ROOT / "models" / f"demo-chest-phantom-v1{suffix}").read_bytes())
    log = (tmp / "server.log").open("w")
    server = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
                               "--server.port", str(port), "--browser.gatherUsageStats", "false"],
                              cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    out: dict[str, Any] = {"series": source, "shape": list(s.pixels.shape), "cpus": len(os.sched_getaffinity(0)),
                           "int16_zlib_bytes": reference, "int16_bytes": len(int16)}
    try:
        for _ in range(120):
            try:
                if urllib.request.urlopen(url + "/_stcore/health", timeout=2).read() == b"ok":
                    break
            except OSError:
                time.sleep(0.5)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                         args=["--no-sandbox", "--disable-dev-shm-usage"])
            for name, run in (("classic", classic), ("reader", reader)):
                ctx = browser.new_context(viewport={"width": 1440, "height": 900})
                page = ctx.new_page()
                meter = Bytes(page)
                out[name] = run(page, url, files, args.steps, meter)
                ctx.close()
            ctx = browser.new_context(viewport={"width": 1440, "height": 900})
            try:
                out["reader"].update(overlay(ctx.new_page(), url, phantom, min(args.steps, 20)))
            except Exception as exc:  # the other numbers stand on their own
                out["reader"]["opacity_change"] = {"n": 0, "error": f"{type(exc).__name__}: {str(exc)[:200]}"}
            ctx.close()
            browser.close()
    finally:
        server.terminate()
        server.wait(10)
    r, c = out["reader"], out["classic"]
    out["ratios"] = {
        "slice_step_p95_classic_over_reader": round(c["slice_step"]["p95_ms"] / max(r["slice_step"]["p95_ms"], 1e-3),
                                                    1),
        "reader_voxel_bytes_over_int16_zlib": round(r["bytes_voxels"] / reference, 3),
    }
    out["targets_met"] = {
        "slice_step_p95_le_50ms": r["slice_step"]["p95_ms"] <= 50,
        "window_drag_ge_30_per_s": r["window_step"]["per_s"] >= 30,
        "opacity_change_le_50ms": r["opacity_change"].get("p95_ms", 1e9) <= 50,
        "bytes_per_series_le_1_2x_zlib": r["bytes_voxels"] <= 1.2 * reference,
        "zero_bytes_per_slice_step": r["bytes_per_slice_step"] == 0,
    }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
