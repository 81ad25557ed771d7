"""Benchmark: training throughput of the app's tf.data pipelines (in memory, and streamed from the
prepared-image cache as training does) against model.fit on the same images already in memory as
tensors (same model, batch size and weights), and the time from 'start' to the first epoch's metrics of
a real job: the first run (images decoded into the cache) and a repeat (the cache re-used). Prints JSON.

    .venv/bin/python bench/bench_training.py [--images 512] [--arch small_cnn]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _epoch_rate(model, data, n: int, batch: int, epochs: int = 3, **fit) -> float:  # type: ignore[no-untyped-def]
    """Images per second of the fastest of `epochs` epochs after one warm-up epoch."""
    import keras

    times: list[float] = []

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):  # type: ignore[no-untyped-def]
            self.t = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):  # type: ignore[no-untyped-def]
            times.append(time.perf_counter() - self.t)

    model.fit(data, epochs=epochs + 1, verbose=0, callbacks=[Timer()], **fit)
    return n / min(times[1:])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--arch", default="small_cnn")
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()
    import keras
    import tensorflow as tf

    from medui.ai.architectures import ARCHITECTURES, build
    from medui.ai.card import ModelCard
    from medui.synthetic.phantoms import write_labeled_folder
    from medui.training import jobs
    from medui.training.data import index_dataset, load_arrays
    from medui.training.fit import TrainConfig, pipeline
    from medui.training.shards import prepared
    from medui.training.stream import stream

    out: dict = {"cpus": os.cpu_count(), "gpus": len(tf.config.list_physical_devices("GPU")), "arch": args.arch,
                 "images": args.images, "batch": args.batch}
    with tempfile.TemporaryDirectory(prefix="medui-bench-train-") as tmp:
        os.environ["MEDUI_JOBS"] = str(Path(tmp) / "jobs")
        os.environ["MEDUI_MODELS"] = str(Path(tmp) / "models")
        root = write_labeled_folder(Path(tmp) / "data", args.images, seed=1, size=256)
        spec = ARCHITECTURES[args.arch]
        built = build(args.arch, weights=None)
        card = ModelCard(name="b", version=1, class_names=["lesion", "normal"], input_size=list(spec["size"]),
                         channels=spec["channels"], architecture=args.arch, cam_layer=built.cam_layer)
        t = time.perf_counter()
        index = index_dataset([root])
        x, y = load_arrays(index, list(range(len(index.samples))), card)
        out["decode_and_prepare_s"] = round(time.perf_counter() - t, 2)
        weights = built.model.get_weights()

        def fresh():  # type: ignore[no-untyped-def]
            m = keras.models.clone_model(built.model)
            m.set_weights(weights)
            m.compile(optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy")
            return m

        xt, yt = tf.constant(x), tf.constant(y.astype(np.float32))
        out["model_fit_tensors_img_s"] = round(_epoch_rate(fresh(), xt, len(x), args.batch, y=yt,
                                                           batch_size=args.batch, shuffle=True), 1)
        plain = pipeline(x, y, args.batch, {}, 0, 2)
        out["app_pipeline_no_augment_img_s"] = round(_epoch_rate(fresh(), plain, len(x), args.batch), 1)
        augmented = pipeline(x, y, args.batch, TrainConfig(data=[], out="x").augment, 0, 2)
        out["app_pipeline_augmented_img_s"] = round(_epoch_rate(fresh(), augmented, len(x), args.batch), 1)
        tensors = out["model_fit_tensors_img_s"]
        out["ratio_pipeline_vs_tensors"] = round(out["app_pipeline_no_augment_img_s"] / tensors, 2)
        out["ratio_augmented_vs_tensors"] = round(out["app_pipeline_augmented_img_s"] / tensors, 2)
        every = list(range(len(index.samples)))
        os.environ["MEDUI_PREPARED_CACHE"] = str(Path(tmp) / "own")  # not the jobs': the first job decodes
        cache = prepared(index, every, card)
        assert cache is not None
        streamed = stream(cache, every, y, args.batch, TrainConfig(data=[], out="x").augment, 0, 2)
        out["app_stream_augmented_img_s"] = round(_epoch_rate(fresh(), streamed, len(x), args.batch), 1)
        out["ratio_stream_vs_pipeline_augmented"] = round(out["app_stream_augmented_img_s"] /
                                                          out["app_pipeline_augmented_img_s"], 2)
        del os.environ["MEDUI_PREPARED_CACHE"]
        cfg = TrainConfig(data=[str(root)], out="bench", arch=args.arch, epochs=1, batch_size=args.batch)
        for run in ("job", "repeat_job"):  # the repeat finds the images prepared in the cache
            t = time.perf_counter()
            job = jobs.start(cfg.to_json())
            while not job.metrics() and job.status().get("state") not in jobs.TERMINAL:
                time.sleep(0.2)
            out[f"{run}_start_to_first_epoch_metrics_s"] = round(time.perf_counter() - t, 1)
            while job.status().get("state") not in jobs.TERMINAL:
                time.sleep(0.5)
            out[f"{run}_state"] = job.status().get("state")
            out[f"{run}_total_s"] = round(time.perf_counter() - t, 1)
            result = job.result() or {}
            out[f"{run}_time_to_first_epoch_s"] = result.get("time_to_first_epoch_s")
            out[f"{run}_images_per_s"] = result.get("images_per_s")
            out[f"{run}_log_prepared"] = next((line.split("] ", 1)[-1] for line in job.log_tail().splitlines()
                                               if "prepared images" in line), None)
    out["target"] = {"ratio_pipeline_vs_tensors": ">= 0.9", "ratio_stream_vs_pipeline_augmented": ">= 0.9"}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
