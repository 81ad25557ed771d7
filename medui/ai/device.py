"""Which compute device TensorFlow will use (GPU name or CPU)."""

from __future__ import annotations

import glob
import os
import platform
import shutil
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class DeviceInfo:
    kind: str  # "GPU" or "CPU"
    name: str
    count: int = 1

    def label(self) -> str:
        if self.kind == "GPU":
            return f"GPU: {self.name}" + (f" (x{self.count})" if self.count > 1 else "")
        return f"CPU: {self.name}"


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip() + f", {os.cpu_count()} cores"
    except OSError:
        pass
    return (platform.processor() or platform.machine()) + f", {os.cpu_count()} cores"


def gpu_present() -> bool:
    """Whether this machine may have an NVIDIA GPU (a /dev/nvidia* device or nvidia-smi), without
    importing TensorFlow: cheap enough for a page render or before a job process starts."""
    return bool(glob.glob("/dev/nvidia[0-9]*") or shutil.which("nvidia-smi"))


def job_env(env: Mapping[str, str]) -> dict[str, str]:
    """The environment of a training process. On a machine without a GPU, TensorFlow (CUDA build) still
    calls cuInit and logs 'failed call to cuInit' as an error: hide the GPUs (CUDA_VISIBLE_DEVICES='',
    unless set) and keep TensorFlow's C++ log to fatal errors (Python errors still reach the job's log).
    A machine with a GPU gets the usual settings, untouched otherwise."""
    out = dict(env, PYTHONUNBUFFERED="1")
    if gpu_present():
        out.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        return out
    out.setdefault("CUDA_VISIBLE_DEVICES", "")
    out["TF_CPP_MIN_LOG_LEVEL"] = "3"
    return out


def detect() -> DeviceInfo:
    """Ask TensorFlow for GPUs (imported lazily: it takes seconds). Falls back to the CPU."""
    try:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        if gpus:
            details = tf.config.experimental.get_device_details(gpus[0])
            return DeviceInfo("GPU", str(details.get("device_name", gpus[0].name)), len(gpus))
    except Exception:  # no TensorFlow or a broken CUDA setup: the app still runs on the CPU
        pass
    return DeviceInfo("CPU", _cpu_name())


def limit_cpu_threads(cpus: int) -> bool:
    """Size TensorFlow's thread pools to `cpus` (e.g. what a scheduler gave this process: by default each
    process takes every core of the machine). False when TensorFlow was already initialised here."""
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(max(1, cpus))
        tf.config.threading.set_inter_op_parallelism_threads(max(1, cpus))
    except RuntimeError:  # its pools exist already and stay as they are
        return False
    return True
