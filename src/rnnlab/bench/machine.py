"""Which CPU or GPU a figure was measured on: the two kinds of CPU this project runs on rank implementations
differently (MKL's and oneDNN's kernels differ by vendor, and so do the costs of denormal floats), so every result
names its CPU and is kept per kind (data/bench/train-<kind>.json); a GPU's result is kept per GPU model
(data/bench/train-cuda-<model>.json) and names its driver and CUDA versions."""

from __future__ import annotations

import platform
import re
import subprocess
from pathlib import Path

KINDS = {"GenuineIntel": "intel", "AuthenticAMD": "amd"}


def cpuinfo_field(name: str) -> str | None:
    """The first value of `name` in /proc/cpuinfo (Linux); None elsewhere."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == name:
                return value.strip()
    except OSError:
        pass
    return None


def cpu_model() -> str:
    return cpuinfo_field("model name") or platform.processor() or platform.machine()


def cpu_kind() -> str:
    """intel, amd, or the vendor id as the kernel reports it (other CPUs keep results of their own too)."""
    vendor = cpuinfo_field("vendor_id") or "unknown"
    return KINDS.get(vendor, vendor.lower())


def has_avx512() -> bool:
    return " avx512f " in f" {cpuinfo_field('flags') or ''} "


def gpu_description() -> dict | None:
    """The first CUDA device's model, memory and capability, the driver (from nvidia-smi, where it is) and the
    CUDA and cuDNN versions torch was built with; None without a CUDA device. It initialises CUDA: call it in a
    child process (variants.in_fresh_process), as every GPU measurement is."""
    import torch

    if not torch.cuda.is_available():
        return None
    props = torch.cuda.get_device_properties(0)
    try:
        driver = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader", "-i", "0"],
                                capture_output=True, text=True, timeout=30, check=True).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        driver = None
    return {"name": props.name, "memory_gib": round(props.total_memory / 2**30, 1),
            "capability": f"{props.major}.{props.minor}", "driver": driver, "torch_cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version(), "visible_devices": torch.cuda.device_count()}


def gpu_kind(name: str) -> str:
    """A GPU model as a file-name part: "NVIDIA H100 80GB HBM3" -> "cuda-nvidia-h100-80gb-hbm3"."""
    return "cuda-" + re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
