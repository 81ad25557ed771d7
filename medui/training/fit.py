"""Fine-tuning and training from scratch, run inside a job process (`python -m medui train-job DIR`).

Defaults aim at real chest radiographs: DenseNet121 (CheXNet) with ImageNet weights on a GPU,
MobileNetV2 on a CPU, 224x224, two-phase transfer learning, class weights, no horizontal flips (they
move the heart), early stopping on validation AUC with the best weights restored, and the operating
threshold chosen on held-out data (every model tried here over-called disease at 0.5).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from medui.ai.card import ModelCard, Preprocessing
from medui.ai.kerastypes import KerasLayer, KerasModel, TFDataset
from medui.training import metrics
from medui.training.plan import ModelPlan as ModelPlan  # what will be trained: decided in one place
from medui.training.plan import default_arch as default_arch
from medui.training.plan import plan_model as plan_model

if TYPE_CHECKING:
    from medui.ai.registry import Entry


@dataclass
class TrainConfig:
    data: list[str]
    out: str  # name of the new model
    base: str | None = None  # registered model to fine-tune
    arch: str | None = None  # or an architecture to train
    weights: str | None = "imagenet"  # for backbones: "imagenet", a local file, or None (random)
    epochs: int = 12
    head_epochs: int = 3  # phase 1 (backbone frozen) for pretrained backbones
    batch_size: int = 32
    learning_rate: float = 1e-3
    fine_tune_lr_factor: float = 0.1
    unfreeze_fraction: float = 0.3  # top fraction of backbone layers trained in phase 2
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    seed: int = 0
    patience: int = 4
    min_sensitivity: float | None = None  # None: Youden's J
    patient_pattern: str | None = None
    min_per_class: int = 10
    augment: dict[str, float] = field(default_factory=lambda: {
        "rotation": 0.014, "zoom": 0.1, "translation": 0.05, "contrast": 0.1, "brightness": 0.1, "hflip": 0.0})
    mixed_precision: str = "auto"  # "auto" (on with a GPU), "on", "off"
    models_dir: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class DeviceInfo:
    label: str  # e.g. "NVIDIA H100 (80 GB)" or "CPU"
    gpus: int
    mixed_precision: bool
    strategy_name: str
    strategy: Any = field(repr=False, compare=False)  # tf.distribute.Strategy


def setup_devices(mixed: str = "auto") -> DeviceInfo:
    """Memory growth, mixed precision (float16 on NVIDIA, float32 outputs) and a distribution strategy."""
    import keras
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    for g in gpus:
        with contextlib.suppress(RuntimeError):  # already initialised
            tf.config.experimental.set_memory_growth(g, True)
    use_mixed = (mixed == "on") or (mixed == "auto" and bool(gpus))
    keras.mixed_precision.set_global_policy("mixed_float16" if use_mixed and gpus else "float32")
    strategy = tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.get_strategy()
    from medui.ai.device import detect

    return DeviceInfo(detect().label(), len(gpus), bool(use_mixed and gpus), type(strategy).__name__, strategy)


def targets(y: np.ndarray, n_classes: int) -> np.ndarray:
    """Training targets: the class (float32) for two classes, else one-hot rows."""
    if n_classes == 2:
        return y.astype(np.float32)
    return np.asarray(np.eye(n_classes, dtype=np.float32)[y])


def augmentation(augment: dict[str, float] | None, seed: int) -> KerasModel | None:
    """The augmentation as a Keras Sequential of random layers (None: switched off)."""
    import keras

    if not augment:
        return None
    layers: list[KerasLayer] = []
    if augment.get("hflip"):
        layers.append(keras.layers.RandomFlip("horizontal", seed=seed))
    if augment.get("rotation"):
        layers.append(keras.layers.RandomRotation(augment["rotation"], fill_mode="constant", seed=seed))
    if augment.get("zoom"):
        layers.append(keras.layers.RandomZoom(augment["zoom"], fill_mode="constant", seed=seed))
    if augment.get("translation"):
        t = augment["translation"]
        layers.append(keras.layers.RandomTranslation(t, t, fill_mode="constant", seed=seed))
    if augment.get("contrast"):
        layers.append(keras.layers.RandomContrast(augment["contrast"], seed=seed))
    if augment.get("brightness"):
        layers.append(keras.layers.RandomBrightness(augment["brightness"], value_range=(0, 1), seed=seed))
    return keras.Sequential(layers, name="augment") if layers else None


def augmented(batches: TFDataset, augment: dict[str, float] | None, seed: int) -> TFDataset:
    """Batches with the augmentation applied (clipped to [0, 1]) and prefetch. One batch at a time (its
    ops use every core): the random layers draw from one seed state, so the same seed augments alike."""
    import tensorflow as tf

    aug = augmentation(augment, seed)
    if aug is None:
        return batches.prefetch(tf.data.AUTOTUNE)
    return (batches
            .map(lambda a, b: (tf.clip_by_value(aug(a, training=True), 0.0, 1.0), b))
            .prefetch(tf.data.AUTOTUNE))


def pipeline(x: np.ndarray, y: np.ndarray, batch: int, augment: dict[str, float] | None, seed: int,
             n_classes: int) -> TFDataset:
    """The in-memory tf.data pipeline (every image in `x`): shuffled, augmented, prefetched. Training
    streams from the prepared-image cache instead (`medui.training.stream`); this is its reference."""
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((x, targets(y, n_classes))).cache()
    if augment is None:
        return ds.batch(batch).prefetch(tf.data.AUTOTUNE)
    return augmented(ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True).batch(batch), augment, seed)


def class_weights(y: np.ndarray, n_classes: int) -> dict[int, float]:
    """Inverse-frequency weights, mean 1 over samples."""
    counts = np.bincount(y, minlength=n_classes).astype(float)
    counts[counts == 0] = 1
    w = len(y) / (n_classes * counts)
    return {k: float(v) for k, v in enumerate(w)}


def replace_head(model: KerasModel, n_classes: int) -> KerasModel:
    """Keep everything up to the layer before `logits`; attach a new logits + activation for the classes."""
    import keras

    features = model.get_layer("logits").input
    units = 1 if n_classes == 2 else n_classes
    logits = keras.layers.Dense(units, name="logits_new")(features)
    out = keras.layers.Activation("sigmoid" if n_classes == 2 else "softmax", name="probabilities_new",
                                  dtype="float32")(logits)
    return keras.Model(model.inputs, out)


def rename_head(model: KerasModel) -> KerasModel:
    """After replace_head, give the new head the registry's layer names again."""
    import keras

    config = model.get_config()
    text = json.dumps(config).replace('"logits_new"', '"logits"').replace('"probabilities_new"', '"probabilities"')
    clone = keras.Model.from_config(json.loads(text))
    clone.set_weights(model.get_weights())
    return clone


def backbone_layers(model: KerasModel) -> list[KerasLayer]:
    head = {"logits", "probabilities", "head_dropout", "gap", "global_pool", "logits_new", "probabilities_new"}
    return [layer for layer in model.layers if layer.name not in head and layer.weights]


def set_trainable(model: KerasModel, fraction: float | None) -> None:
    """fraction None: all trainable; 0: head only; else the top fraction of backbone layers (BatchNorm
    stays frozen in fine-tuning so its statistics are not disturbed by small batches)."""
    import keras

    layers = backbone_layers(model)
    cut = len(layers) if fraction is None else int(len(layers) * (1 - fraction))
    for k, layer in enumerate(layers):
        layer.trainable = fraction is None or (k >= cut and not isinstance(layer, keras.layers.BatchNormalization))


class JobCallback:
    """Writes per-epoch metrics and progress with ETA (an upper bound: the epochs left if early stopping
    does not end training sooner); says when an epoch begins; stops training when the job is cancelled.
    Counts the epochs actually run and notes when the first one ended (`first_epoch_end`, time.time())."""

    def __init__(self, write: Callable[[dict[str, Any]], None], total_epochs: int, cancelled: Callable[[], bool],
                 phase: str, offset: int = 0, started: float | None = None,
                 began: Callable[[int], None] | None = None) -> None:
        import keras

        outer = self
        t_start = time.time() if started is None else started

        class _CB(keras.callbacks.Callback):  # type: ignore[misc]
            def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
                if cancelled():
                    self.model.stop_training = True
                    outer.cancelled = True

            def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
                outer.t_epoch = time.time()
                if began is not None:
                    began(offset + epoch + 1)

            def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
                now = time.time()
                done = offset + epoch + 1
                outer.epochs_run += 1
                if outer.first_epoch_end is None:
                    outer.first_epoch_end = now
                outer.durations.append(now - outer.t_epoch)
                eta = float(np.mean(outer.durations)) * (total_epochs - done)
                write({"epoch": done, "phase": phase, "seconds": round(outer.durations[-1], 2), "eta_s": round(eta),
                       "elapsed_s": round(now - t_start, 2),
                       **{k: round(float(v), 5) for k, v in (logs or {}).items()}})

        self.callback = _CB()
        self.cancelled = False
        self.epochs_run = 0
        self.first_epoch_end: float | None = None
        self.durations: list[float] = []
        self.t_epoch = time.time()


def evaluate_arrays(probs: np.ndarray, y: np.ndarray, classes: list[str], threshold: float) -> dict[str, Any]:
    """Held-out evaluation: ROC/PR curves, AUC with bootstrap CI, operating point, calibration."""
    if len(classes) == 2:
        p = probs[:, 1]
        fpr, tpr, thr = metrics.roc_curve(y, p)
        rec, prec = metrics.pr_curve(y, p)
        lo, hi = metrics.auc_ci(y, p)
        op = metrics.at_threshold(y, p, threshold)
        cal = metrics.calibration_curve(y, p)
        return {"n": int(len(y)), "classes": classes, "auc": metrics.auc(y, p), "auc_ci": [lo, hi], **op,
                "roc": {"fpr": fpr.tolist(), "tpr": tpr.tolist()},
                "pr": {"recall": rec.tolist(), "precision": prec.tolist()},
                "calibration": cal, "ece": cal["ece"]}
    per_class = {}
    for k, c in enumerate(classes):
        yk = (y == k).astype(int)
        per_class[c] = {"auc": metrics.auc(yk, probs[:, k]), **metrics.at_threshold(yk, probs[:, k], 0.5)}
    pred = probs.argmax(axis=1)
    aucs = [v["auc"] for v in per_class.values() if not np.isnan(v["auc"])]
    top = metrics.calibration_curve((pred == y).astype(int), probs.max(axis=1))  # top-label calibration
    return {"n": int(len(y)), "classes": classes, "auc": float(np.mean(aucs)) if aucs else float("nan"),
            "auc_ci": [float("nan"), float("nan")], "accuracy": float((pred == y).mean()) if len(y) else float("nan"),
            "threshold": threshold, "confusion_matrix": metrics.confusion(y, pred, len(classes)),
            "per_class": per_class, "ece": top["ece"], "sensitivity": float("nan"), "specificity": float("nan"),
            "ppv": float("nan"), "npv": float("nan")}


def base_model(cfg: TrainConfig, n_classes: int, gpu: bool, models_dir: Path | None = None
               ) -> tuple[KerasModel, ModelCard, Entry | None, list[str], bool, ModelPlan]:
    """The model a run starts from — a registered model to fine-tune (a new head when the classes differ)
    or an architecture as `plan_model` decides — as (model, card template, parent entry or None, notes,
    pretrained, what is trained from which weights)."""
    from medui.ai.architectures import ARCHITECTURES, build
    from medui.ai.registry import find, load_keras

    if cfg.base:
        entry = find(cfg.base, models_dir)
        model = load_keras(entry.path)
        notes = [f"fine-tuning {entry.id}"]
        n_old = 2 if entry.card.task == "binary" else len(entry.card.class_names)
        if n_old != n_classes or entry.card.task != ("binary" if n_classes == 2 else "multiclass"):
            model = replace_head(model, n_classes)
            notes.append("classes differ from the parent: new head")
        return model, entry.card, entry, notes, True, ModelPlan(entry.card.architecture, "parent", "", None, entry.id)
    plan = plan_model(cfg.arch, None, gpu, cfg.weights)
    arch, spec = plan.arch, ARCHITECTURES[plan.arch]
    built = build(arch, n_classes=n_classes, weights=plan.weights if spec["pretrained"] else None)
    pretrained = plan.weights is not None and not built.notes
    if plan.weights is not None and not pretrained:  # the planned download failed after all
        if cfg.arch is None:  # the default: the small CNN from scratch rather than a random backbone
            plan = ModelPlan("small_cnn", "scratch", f"ImageNet weights for {spec['title']} could not be downloaded")
            arch, spec = plan.arch, ARCHITECTURES[plan.arch]
            small = build(arch, n_classes=n_classes)
            built = type(built)(small.model, small.cam_layer, built.notes)
        else:
            plan = ModelPlan(arch, "random", "ImageNet weights could not be downloaded")
    card = ModelCard(name=cfg.out, version=1, class_names=["a", "b"], input_size=list(spec["size"]),
                     channels=spec["channels"], architecture=arch, cam_layer=built.cam_layer,
                     preprocessing=Preprocessing("percentile", 0.5, 99.5, None, "letterbox"))
    return built.model, card, None, [f"architecture {arch}"] + built.notes, pretrained, plan
