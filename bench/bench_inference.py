"""Benchmark: latency of prediction and prediction + Grad-CAM for one 512x512 image. Prints JSON.

    .venv/bin/python bench/bench_inference.py [--repeats 20]

Models: the shipped demo model and DenseNet121 at 224x224 (random weights: latency does not depend on
them). Baselines measured in the same run on the same model: the bare forward pass and the forward +
backward pass (gradient of the logit w.r.t. the CAM layer, what Grad-CAM needs) in a compiled
tf.function, and tf-keras-vis' eager Grad-CAM. SmoothGrad (20 samples, one compiled batch) is timed on
MobileNetV2-224. Medians of repeats after warm-up.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from medui.ai.card import ModelCard  # after the path above
from medui.ai.kerastypes import KerasModel, KerasTensor


def _median_ms(fn: Callable[[], object], repeats: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return round(statistics.median(times) * 1e3, 2)


def bench_model(model: KerasModel, card: ModelCard, repeats: int) -> dict[str, Any]:
    import keras
    import tensorflow as tf

    from medui.ai.inference import Predictor
    from medui.ai.preprocess import to_original
    from medui.ai.registry import Entry
    from medui.ai.saliency import Explainer
    from medui.series import Series
    from medui.synthetic.phantoms import make_phantom
    from medui.usecases import diagnose as usecase

    predictor = Predictor(model, card)
    explainer = Explainer(model, card.cam_layer, card.task)
    image = make_phantom(7, 512, lesion=True).image.astype(np.float32)
    series = Series(pixels=image[None], affine=np.eye(4), modality="DX")
    x, geoms = predictor.prepare(series)
    xt = tf.constant(x)
    grad_model = keras.Model(model.inputs, [model.get_layer(card.cam_layer).output,
                                            model.get_layer("logits").output])

    forward = tf.function(lambda a: model(a, training=False))

    def _forward_backward(a: KerasTensor) -> tuple[KerasTensor, KerasTensor, KerasTensor]:
        # Return the activations too: with a linear head the gradient alone does not depend on the
        # input, and TensorFlow would prune the whole forward pass.
        with tf.GradientTape() as tape:
            conv, out = grad_model(a, training=False)
            score = out[:, 0]
        return tape.gradient(score, conv), conv, out

    forward_backward = tf.function(_forward_backward)

    def predict() -> None:
        predictor.predict(series)

    def predict_and_cam() -> None:
        xb, gs = predictor.prepare(series)
        cams, logits = explainer.gradcam_with_logits(xb, 1)
        predictor.probabilities(logits)
        to_original(cams[0], gs[0])

    def tfkv() -> None:
        explainer.reference("gradcam", x, 1)

    loaded = usecase.LoadedModel(Entry(card, Path("unused.keras")), predictor, explainer)

    def usecase_score_and_overlay() -> None:  # what the Diagnose page and `medui predict --cam` do
        usecase.overlay(usecase.score(series, loaded), 0, "gradcam").png()

    out = {
        "bare_forward_ms": _median_ms(lambda: forward(xt).numpy(), repeats),
        "bare_forward_backward_ms": _median_ms(lambda: [t.numpy() for t in forward_backward(xt)], repeats),
        "predict_ms": _median_ms(predict, repeats),
        "predict_plus_gradcam_ms": _median_ms(predict_and_cam, repeats),
        "tf_keras_vis_gradcam_ms": _median_ms(tfkv, max(3, repeats // 4), warmup=1),
        "usecase_score_plus_overlay_png_ms": _median_ms(usecase_score_and_overlay, repeats),
    }
    fast = out["predict_plus_gradcam_ms"]
    out["predict_plus_gradcam_over_forward_backward"] = round(fast / out["bare_forward_backward_ms"], 2)
    out["tf_keras_vis_over_fast_gradcam"] = round(out["tf_keras_vis_gradcam_ms"] / fast, 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    from medui.ai.architectures import build
    from medui.ai.registry import list_models, load_keras
    from medui.ai.saliency import Explainer

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    result: dict[str, Any] = {"cpus": cpus}
    demo = [e for e in list_models() if e.card.demo]
    if demo:
        t = time.perf_counter()
        model = load_keras(demo[0].path)
        result["demo_load_once_ms"] = round((time.perf_counter() - t) * 1e3, 1)
        result["demo"] = {"model": demo[0].id, **bench_model(model, demo[0].card, args.repeats)}
    for arch in ("densenet121", "mobilenet_v2"):
        built = build(arch, weights=None)
        card = ModelCard(name=arch, version=1, class_names=["normal", "abnormal"], input_size=[224, 224], channels=3,
                         architecture=arch, cam_layer=built.cam_layer)
        if arch == "densenet121":
            result[arch] = bench_model(built.model, card, args.repeats)
        else:
            from medui.ai.inference import Predictor
            from medui.series import Series
            from medui.synthetic.phantoms import make_phantom

            predictor = Predictor(built.model, card)
            explainer = Explainer(built.model, built.cam_layer)
            series = Series(pixels=make_phantom(3, 512).image[None].astype(np.float32), affine=np.eye(4))
            x, _ = predictor.prepare(series)
            smooth = _median_ms(functools.partial(explainer.smoothgrad, x, 1), 5, warmup=1)
            result[arch] = {"smoothgrad20_batched_ms": smooth,
                            "target_ms": 1000}
    result["targets"] = {"predict_plus_gradcam_over_forward_backward": "<= 1.5", "smoothgrad20_batched_ms": "< 1000"}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
