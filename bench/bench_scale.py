"""Benchmark: training data larger than memory. Peak RSS and images/s of one training epoch on generated
512x512 images at several dataset sizes, streaming from the prepared-image cache against the in-memory
pipeline (run only where the prepared set fits comfortably in memory). Each measurement runs in its own
process, so its peak RSS is its own. Prints JSON.

    .venv/bin/python bench/bench_scale.py [--sizes 2000,8000,32000] [--input 128] [--channels 1]

Per size: `index_s` (the dataset check, once), then for `memory` (load_arrays + fit.pipeline) and
`stream` (shards.prepared + stream.stream, cache built first): `prepare_s`, `epoch_s`, `img_s` (one
augmented epoch of small_cnn after a 3-step warm-up), `peak_rss_mb` (the training process) and, for
the stream, `workers_peak_rss_mb` (the largest decode worker); `hit` opens the cache a second time as a
repeat run does (`decoded` 0: nothing is decoded before the first epoch). On a shared machine one epoch
each is noisy, so sizes up to `--interleave-max` also train one model on both pipelines in one process,
epochs alternating (`interleaved`, medians of 3). Targets: stream peak RSS at the largest size within
1.3x of the smallest; stream img/s >= 0.9x of memory where both run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
CLASSES = ("normal", "lesion")


def _write_images(args: tuple[str, int, int]) -> None:
    """Images `start`..`stop`-1: smooth 512x512 grey fields (a bright disc for 'lesion'), as JPEG."""
    import cv2

    folder, start, stop = args
    for k in range(start, stop):
        rng = np.random.default_rng(k)
        img = cv2.resize(rng.normal(120, 30, (16, 16)).astype(np.float32), (512, 512), interpolation=cv2.INTER_CUBIC)
        if k % 2:
            cy, cx = rng.integers(100, 412, 2)
            cv2.circle(img, (int(cx), int(cy)), int(rng.integers(15, 40)), 200.0, -1)
        img += rng.normal(0, 4, img.shape).astype(np.float32)
        path = Path(folder) / CLASSES[k % 2] / f"img{k:06d}.jpg"
        cv2.imwrite(str(path), np.clip(img, 0, 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 90])


def generate(pool: Path, start: int, n: int) -> None:
    """Images start..n-1 of the pool."""
    for c in CLASSES:
        (pool / c).mkdir(parents=True, exist_ok=True)
    chunks = [(str(pool), s, min(n, s + 500)) for s in range(start, n, 500)]
    with ProcessPoolExecutor(os.cpu_count() or 1) as ex:
        list(ex.map(_write_images, chunks))


def subset(pool: Path, folder: Path, n: int) -> Path:
    """The first n images of the pool as hard links (no copy)."""
    for k in range(n):
        src = pool / CLASSES[k % 2] / f"img{k:06d}.jpg"
        dst = folder / CLASSES[k % 2] / src.name
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.link(src, dst)
    return folder


def available_bytes() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


def child(mode: str, index_path: str, size: int, channels: int, batch: int) -> dict[str, object]:
    """One measurement in this process: prepare, then one timed epoch."""
    import resource

    from medui.ai.card import ModelCard
    from medui.training.data import DatasetIndex, class_numbers, load_arrays, order_classes
    from medui.training.fit import TrainConfig, pipeline
    from medui.training.shards import prepared
    from medui.training.stream import stream

    index = DatasetIndex.from_json(json.loads(Path(index_path).read_text()))
    n = len(index.samples)
    card = ModelCard(name="b", version=1, class_names=order_classes(index.classes), input_size=[size, size],
                     channels=channels, architecture="small_cnn", cam_layer="cam")
    every = list(range(n))
    y = class_numbers(index, every, card.class_names)
    augment = TrainConfig(data=[], out="x").augment
    out: dict[str, object] = {}
    t = time.perf_counter()
    if mode == "both":
        x, _ = load_arrays(index, every, card)
        memory = pipeline(x, y, batch, augment, 0, 2)
        del x
        cache = prepared(index, every, card)
        assert cache is not None
        return interleaved({"memory": memory, "stream": stream(cache, every, y, batch, augment, 0, 2)},
                           size, channels, n)
    if mode == "memory":
        x, _ = load_arrays(index, every, card)
        out["prepare_s"] = round(time.perf_counter() - t, 2)
        ds = pipeline(x, y, batch, augment, 0, 2)
        del x  # as training did: the pipeline holds what it needs
    else:
        cache = prepared(index, every, card)
        assert cache is not None
        out["prepare_s"] = round(time.perf_counter() - t, 2)
        out["decoded"] = cache.decoded
        if mode == "hit":
            return out
        ds = stream(cache, every, y, batch, augment, 0, 2)
    model = _model(size, channels)
    model.fit(ds, epochs=1, steps_per_epoch=3, verbose=0)  # tracing, not timed
    t = time.perf_counter()
    model.fit(ds, epochs=1, verbose=0)
    epoch = time.perf_counter() - t
    out.update(epoch_s=round(epoch, 1), img_s=round(n / epoch, 1),
               peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
               workers_peak_rss_mb=round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024))
    return out


def _model(size: int, channels: int):  # type: ignore[no-untyped-def]
    import keras

    from medui.ai.architectures import small_cnn

    model = small_cnn((size, size), channels, 2).model
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=keras.losses.BinaryCrossentropy(),
                  metrics=[keras.metrics.AUC(name="auc")])
    return model


def interleaved(pipelines: dict[str, object], size: int, channels: int, n: int, rounds: int = 3
                ) -> dict[str, object]:
    """img/s of each pipeline training the same model, epochs alternating (the median of `rounds`): the
    machine's load changes alike for both."""
    model = _model(size, channels)
    for ds in pipelines.values():
        model.fit(ds, epochs=1, steps_per_epoch=3, verbose=0)
    times: dict[str, list[float]] = {k: [] for k in pipelines}
    for _ in range(rounds):
        for name, ds in pipelines.items():
            t = time.perf_counter()
            model.fit(ds, epochs=1, verbose=0)
            times[name].append(time.perf_counter() - t)
    out: dict[str, object] = {f"{k}_img_s": round(n / float(np.median(v)), 1) for k, v in times.items()}
    out["epochs_s"] = {k: [round(t, 1) for t in v] for k, v in times.items()}
    ratio = float(np.median(times["memory"])) / float(np.median(times["stream"]))
    out["ratio_stream_vs_memory_img_s"] = round(ratio, 2)
    return out


def run_child(mode: str, index_path: Path, args: argparse.Namespace, env: dict[str, str]) -> dict[str, object]:
    cmd = [sys.executable, __file__, "--child", mode, "--index", str(index_path), "--input", str(args.input),
           "--channels", str(args.channels), "--batch", str(args.batch)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        return {"error": done.stderr[-1500:]}
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="2000,8000,32000")
    parser.add_argument("--input", type=int, default=128)
    parser.add_argument("--channels", type=int, default=1)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--interleave-max", type=int, default=2000,
                        help="sizes up to this also time both pipelines in one process, epochs alternating")
    parser.add_argument("--child", default=None)
    parser.add_argument("--index", default=None)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.index, args.input, args.channels, args.batch)))
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    out: dict[str, object] = {"cpus": os.cpu_count(), "arch": "small_cnn", "source": "512x512 grey JPEG",
                              "input": [args.input, args.input, args.channels], "batch": args.batch}
    with tempfile.TemporaryDirectory(prefix="medui-bench-scale-") as tmp:
        env = {**os.environ, "MEDUI_JOBS": str(Path(tmp) / "jobs"), "PYTHONPATH": str(ROOT),
               "MEDUI_PREPARED_CACHE": str(Path(tmp) / "cache"), "MEDUI_PREPARED_CACHE_MB": str(1 << 20),
               "MEDUI_MAX_FILES": str(2 * max(sizes) + 10)}  # the default (20,000) refuses the largest set
        os.environ.update(env)
        from medui.training.data import index_dataset

        rows, made = [], 0
        for n in sizes:
            t = time.perf_counter()
            generate(Path(tmp) / "pool", made, max(made, n))
            made = max(made, n)
            row: dict[str, object] = {"images": n, "generate_s": round(time.perf_counter() - t, 1)}
            data = subset(Path(tmp) / "pool", Path(tmp) / f"data{n}", n)
            t = time.perf_counter()
            index = index_dataset([data])
            row["index_s"] = round(time.perf_counter() - t, 1)
            index_path = Path(tmp) / f"index{n}.json"
            index_path.write_text(json.dumps(index.to_json()))
            del index
            need = n * args.input * args.input * args.channels * 4 * 2  # the array and the pipeline's copy
            if need < 0.6 * available_bytes():
                row["memory"] = run_child("memory", index_path, args, env)
            else:
                row["memory"] = {"skipped": f"needs about {need / 2**30:.1f} GB; "
                                            f"{available_bytes() / 2**30:.1f} GB available"}
            row["stream"] = run_child("stream", index_path, args, env)
            row["hit"] = run_child("hit", index_path, args, env)
            if n <= args.interleave_max and "skipped" not in row["memory"]:
                row["interleaved"] = run_child("both", index_path, args, env)
            mem, st = row["memory"], row["stream"]
            if isinstance(mem, dict) and isinstance(st, dict) and "img_s" in mem and "img_s" in st:
                row["ratio_stream_vs_memory_img_s"] = round(float(st["img_s"]) / float(mem["img_s"]), 2)
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
        out["runs"] = rows
        first, last = rows[0]["stream"], rows[-1]["stream"]
        if isinstance(first, dict) and isinstance(last, dict) and "peak_rss_mb" in first and "peak_rss_mb" in last:
            out["ratio_stream_peak_rss_largest_vs_smallest"] = round(float(last["peak_rss_mb"]) /
                                                                     float(first["peak_rss_mb"]), 2)
        mems = [r for r in rows if isinstance(r["memory"], dict) and "peak_rss_mb" in r["memory"]]
        if len(mems) > 1:
            a, b = mems[0]["memory"], mems[-1]["memory"]
            assert isinstance(a, dict) and isinstance(b, dict)
            ratio = float(b["peak_rss_mb"]) / float(a["peak_rss_mb"])
            out["ratio_memory_peak_rss_largest_vs_smallest"] = round(ratio, 2)
    out["target"] = {"ratio_stream_peak_rss_largest_vs_smallest": "<= 1.3", "ratio_stream_vs_memory_img_s": ">= 0.9"}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
