"""The model registry on disk: `models/<name>-v<version>.keras` with `<name>-v<version>.json` beside it.

Models are always loaded with `safe_mode=True`; nothing ever overwrites an existing model.

A model appears atomically, whenever the writing process dies: both files are first written in full
under hidden temporary names (`.<id>.<tag>.partial`, `.<id>.<tag>.card.partial`), then hard-linked to
their names, the `.keras` first and the card last (a link never replaces a file). A model is registered
when its card is in place. A process killed between the two links leaves a `.keras` whose complete card
is staged beside it: the next `list_models` links that card (rolls the registration forward). Temporaries
of a dead registration are removed after `STALE_S`; a `.keras` without any card is ignored (and its
version is never reused), never deleted.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medui.ai import modelfile
from medui.ai.card import ModelCard
from medui.ai.kerastypes import KerasModel
from medui.errors import CardError, MedUIError, ModelExistsError, ModelLoadError, RegistryWriteError

DEFAULT_DIR = Path(__file__).resolve().parents[2] / "models"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
STALE_S = 600.0  # a registration's temporaries untouched this long belong to a dead process
PAUSE_VARIABLE = "MEDUI_TEST_PAUSE_AT"  # tests only: "<point>:<marker file>" (see `pause_point`)


def models_dir() -> Path:
    return Path(os.environ.get("MEDUI_MODELS", DEFAULT_DIR))


@dataclass(frozen=True)
class Entry:
    card: ModelCard
    path: Path  # the .keras file

    @property
    def id(self) -> str:
        return self.card.id


def pause_point(point: str) -> None:
    """Tests only: with MEDUI_TEST_PAUSE_AT=<point>:<marker file>, create the marker and wait here (for a
    SIGKILL) instead of going on; with the variable unset (always, outside tests) do nothing."""
    wanted, _, marker = os.environ.get(PAUSE_VARIABLE, "").partition(":")
    if wanted != point or not marker:
        return
    tmp = Path(f"{marker}.{os.getpid()}.tmp")
    tmp.write_text(str(os.getpid()))
    os.replace(tmp, marker)  # the test reads the pid as soon as the marker exists: never an empty file
    time.sleep(600)


def _staged_card(keras_file: Path) -> Path | None:
    """The complete card that the registration which linked `keras_file` staged (found by the `.keras`
    temporary that is the same file), when that registration was killed before linking it."""
    for tmp in keras_file.parent.glob(f".{keras_file.stem}.*.partial"):
        tag = tmp.name[len(keras_file.stem) + 2:-len(".partial")]
        if "." in tag:  # a card temporary, or another model's (a name with '.')
            continue
        card = tmp.with_name(f".{keras_file.stem}.{tag}.card.partial")
        with contextlib.suppress(OSError):
            if card.exists() and os.path.samefile(tmp, keras_file):
                return card
    return None


def _tidy(root: Path) -> None:
    """Roll forward registrations that linked their `.keras` but not their card; remove stale temporaries."""
    for keras_file in root.glob("*.keras"):
        staged = None if keras_file.with_suffix(".json").exists() else _staged_card(keras_file)
        if staged is not None:
            with contextlib.suppress(OSError):  # FileExistsError: another process rolled it forward
                os.link(staged, keras_file.with_suffix(".json"))
    now = time.time()
    for tmp in root.glob(".*.partial"):
        try:
            if now - tmp.stat().st_mtime > STALE_S:
                tmp.unlink()
        except OSError:
            continue  # another process tidied it, or the folder is read-only: listing still works


def list_models(root: Path | None = None) -> list[Entry]:
    """Registered models, newest first (creation date, then version)."""
    root = Path(root or models_dir())
    _tidy(root)
    entries = []
    for keras_file in sorted(root.glob("*.keras")):
        card_file = keras_file.with_suffix(".json")
        try:
            entries.append(Entry(ModelCard.load(card_file), keras_file))
        except CardError:
            continue  # a model without a valid card is not registered
    return sorted(entries, key=lambda e: (e.card.created, e.card.version), reverse=True)


def find(name: str, root: Path | None = None) -> Entry:
    """By id (`name-vN`) or by name (its newest version)."""
    entries = list_models(root)
    for e in entries:
        if e.id == name:
            return e
    same = [e for e in entries if e.card.name == name]
    if same:
        return max(same, key=lambda e: e.card.version)
    known = ", ".join(e.id for e in entries) or "none"
    raise MedUIError(f"no model named '{name}' in {root or models_dir()}; registered: {known}")


def next_version(name: str, root: Path | None = None) -> int:
    """One more than any version of `name` registered or with a file in the registry (a `.keras` without
    card, a card without `.keras`): a version number is never given twice."""
    root = Path(root or models_dir())
    own = re.compile(rf"^{re.escape(name)}-v([0-9]+)\.(keras|json)$")
    taken = [int(m.group(1)) for p in (root.iterdir() if root.is_dir() else []) if (m := own.match(p.name))]
    registered = [e.card.version for e in list_models(root) if e.card.name == name]
    return 1 + max(registered + taken, default=0)


def load_keras(path: Path, display_name: str | None = None) -> KerasModel:
    """Load a .keras file with safe_mode=True; arbitrary code (Lambda layers) is refused. The zip is
    checked first (`medui.ai.modelfile.check`: ModelFileError for anything a .keras file does not hold).

    Errors name `display_name` (e.g. the user's upload) instead of the file's own name when given."""
    shown = display_name or Path(path).name
    modelfile.check(path, shown)
    import keras

    try:
        return keras.saving.load_model(str(path), safe_mode=True, compile=False)
    except Exception as exc:
        text = str(exc).replace(str(path), shown)  # Keras' message names the file it was given
        if "safe_mode=False" in text or "unsafe_deserialization" in text:  # Keras' refusal of arbitrary code
            raise ModelLoadError(
                f"{shown} contains arbitrary Python code (a Lambda layer or similar) and was refused. "
                "MedUI only loads models in Keras safe mode; rebuild the model without Lambda layers.") from exc
        first = text.splitlines()[0][:200] if text else ""
        raise ModelLoadError(f"{shown} is not a loadable Keras 3 model ({type(exc).__name__}: {first}). "
                             "Save it with model.save('x.keras').") from exc


@dataclass(frozen=True)
class ModelShape:
    """What a loaded model itself says about its input and output (so nobody has to type it)."""

    input_size: tuple[int, int]  # height, width
    channels: int
    outputs: int  # units of the last layer: 1 for a binary (sigmoid) model, n for n classes
    cam_layers: tuple[str, ...]  # layers with a 4-D output (feature maps), last first: CAM layer candidates


def shape_of(model: KerasModel, display_name: str = "the model") -> ModelShape:
    """CardError when the model does not take one (height, width, channels) image or give one vector."""
    shape = tuple(model.inputs[0].shape[1:])
    out = tuple(model.outputs[0].shape[1:])
    if len(shape) != 3 or None in shape or len(out) != 1 or out[0] is None:
        raise CardError(f"{display_name} takes input {shape} and gives {out}; MedUI models take one fixed-size "
                        "image (height, width, channels) and give one score per class")
    maps = []
    for layer in model.layers:
        try:
            rank = len(layer.output.shape)
        except (AttributeError, ValueError):  # a layer used more than once has no single output
            continue
        kind = type(layer).__name__
        if rank == 4 and kind != "InputLayer" and "Pooling" not in kind and "Dropout" not in kind:
            maps.append(layer.name)
    return ModelShape((int(shape[0]), int(shape[1])), int(shape[2]), int(out[0]), tuple(reversed(maps)))


def validate(model: KerasModel, card: ModelCard) -> None:
    """The model matches its card and a test prediction runs."""
    shape = tuple(model.inputs[0].shape[1:])
    if shape != (card.input_size[0], card.input_size[1], card.channels):
        raise CardError(f"the card says input {card.input_size[0]}x{card.input_size[1]}x{card.channels}, the model "
                        f"takes {shape}; fix the card")
    try:
        model.get_layer(card.cam_layer)
        model.get_layer("logits")
    except ValueError as exc:
        raise CardError(f"the model has no layer '{card.cam_layer}' (CAM layer) or no 'logits' layer; MedUI models "
                        "end in a 'logits' Dense layer followed by an activation") from exc
    out = np.asarray(model.predict(np.zeros((1, *shape), np.float32), verbose=0))
    expected = 1 if card.task == "binary" else len(card.class_names)
    if out.shape != (1, expected) or not np.all(np.isfinite(out)):
        raise CardError(f"a test prediction gave shape {out.shape}; the card's classes need (1, {expected})")


def check_name(name: str) -> None:
    """CardError unless `name` is a model name: it becomes a file name in the registry, so no path."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        shown = repr(name[:80] + ("..." if len(name) > 80 else "")) if isinstance(name, str) else repr(name)
        raise CardError(f"model name {shown} must start with a letter or digit and be letters, digits, '.', '_' "
                        "or '-' (at most 64, no '/' or '..'); choose another name")


def _copy_with_umask(source: Path, target: Path) -> None:
    """Copy bytes into a new file created with mode 0o666 less the umask (a group's service account
    can read the registry with umask 022), never over an existing file."""
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    with os.fdopen(fd, "wb") as dst, open(source, "rb") as src:
        shutil.copyfileobj(src, dst, 1 << 20)
        dst.flush()
        os.fsync(dst.fileno())


def _write_new(target: Path, text: str) -> None:
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    with os.fdopen(fd, "w") as dst:
        dst.write(text)
        dst.flush()
        os.fsync(dst.fileno())


def _same(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _link_new(source: Path, target: Path, what: str) -> None:
    try:
        try:
            os.link(source, target)  # atomic, and never replaces an existing file
        except FileExistsError:
            raise
        except OSError as exc:  # a file system without hard links (some network or FAT mounts)
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.ENOSYS):
                raise
            if target.exists():
                raise FileExistsError(errno.EEXIST, "exists", str(target)) from exc
            os.rename(source, target)  # atomic; only the check above guards against overwriting
    except FileExistsError as exc:
        raise ModelExistsError(f"{target.name} already exists; models are never overwritten. Use version "
                               f"{next_version(what, target.parent)}") from exc


def register(model_file: Path, card: ModelCard, root: Path | None = None, move: bool = False,
             model: KerasModel | None = None) -> Entry:
    """Validate and copy a model with its card into the registry, never overwriting.

    `model`: the already loaded `model_file` (it is then not loaded again). Files get the umask's mode."""
    root = Path(root or models_dir())
    check_name(card.name)
    card.validate()
    if model is None:
        model = load_keras(model_file)
    else:
        modelfile.check(model_file, Path(model_file).name)  # what is copied is what was checked
    validate(model, card)
    try:
        return _add(model_file, card, root, move)
    except OSError as exc:
        raise RegistryWriteError(f"could not write {card.id} into the model registry {root} "
                                 f"({exc.strerror or exc}); expected a writable folder with free space. Make it "
                                 "writable, free space, or set MEDUI_MODELS to another folder; nothing was "
                                 "registered") from exc


def _add(model_file: Path, card: ModelCard, root: Path, move: bool) -> Entry:
    root.mkdir(parents=True, exist_ok=True)
    target = root / f"{card.id}.keras"
    if target.exists() or target.with_suffix(".json").exists():
        raise ModelExistsError(f"{target.name} already exists; models are never overwritten. Use version "
                               f"{next_version(card.name, root)}")
    tag = uuid.uuid4().hex[:8]
    tmp, card_tmp = root / f".{card.id}.{tag}.partial", root / f".{card.id}.{tag}.card.partial"
    try:
        _copy_with_umask(Path(model_file), tmp)
        _write_new(card_tmp, json.dumps(card.to_json(), indent=2) + "\n")
        pause_point("register")
        _link_new(tmp, target, card.name)
        pause_point("card")
        try:
            _link_new(card_tmp, target.with_suffix(".json"), card.name)
        except ModelExistsError:
            if not _same(card_tmp, target.with_suffix(".json")):  # else `_tidy` rolled us forward
                target.unlink(missing_ok=True)  # only this registration linked it: no card, not a model
                raise
    finally:
        tmp.unlink(missing_ok=True)
        card_tmp.unlink(missing_ok=True)
    if move:
        Path(model_file).unlink(missing_ok=True)
    return Entry(card, target)


def delete(entry_id: str, root: Path | None = None) -> None:
    entry = find(entry_id, root)
    if entry.card.demo:
        raise MedUIError("the demo model ships with MedUI and cannot be deleted from the app")
    entry.path.with_suffix(".json").unlink(missing_ok=True)  # the card first: the model is gone at once
    entry.path.unlink(missing_ok=True)
