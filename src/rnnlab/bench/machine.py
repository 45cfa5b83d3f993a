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


# The instruction-set flags that decide which MKL/oneDNN kernels run: AVX2 + FMA, AVX-512 and its VNNI/BF16
# extensions, and Intel's AMX tiles.
RELEVANT_FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16", "amx_tile",
                  "amx_bf16", "amx_int8")


def cpu_flags() -> list[str]:
    """Those of RELEVANT_FLAGS this CPU has (from /proc/cpuinfo; none where it is missing)."""
    present = set((cpuinfo_field("flags") or "").split())
    return [flag for flag in RELEVANT_FLAGS if flag in present]


def cpu_identity() -> dict:
    """The CPU a figure was measured on, as every result records it. Reads /proc/cpuinfo only: no torch op runs,
    so it is safe before the benchmark's runs are forked."""
    import torch

    return {"cpu_model": cpu_model(), "cpu_vendor": cpuinfo_field("vendor_id"), "cpu_kind": cpu_kind(),
            "avx512": has_avx512(), "cpu_flags": cpu_flags(),
            "torch_cpu_capability": torch.backends.cpu.get_cpu_capability()}


def denormal_timings(flush: bool, size: int = 256, repeats: int = 20) -> dict[str, float]:
    """The fastest of `repeats` [size, size] sgemms and elementwise multiplies on normal and on denormal inputs,
    flush-denormal (FTZ/DAZ) set as asked before the process's first torch op: OpenMP's worker threads copy the
    mode when they start (see variants.in_fresh_process), so run it in a fresh process, once per mode."""
    import torch

    from rnnlab.bench.flops import fastest_seconds

    torch.set_flush_denormal(flush)
    torch.manual_seed(0)
    normal = torch.rand(size, size) + 0.5
    # Denormal bit patterns (exponent bits zero), made from integers so that flush-denormal cannot zero them first.
    denormal = torch.randint(1, 2**23, (size, size), dtype=torch.int32).view(torch.float32)
    seconds = {}
    for name, x in (("normal", normal), ("denormal", denormal)):
        seconds[f"gemm_{name}_s"] = fastest_seconds(lambda x=x: torch.mm(x, normal), repeats)
        seconds[f"mul_{name}_s"] = fastest_seconds(lambda x=x: torch.mul(x, 0.5), repeats)
    return seconds


def denormal_cost(size: int = 256) -> dict:
    """How this CPU treats denormal floats (vanishing gradients turn into them; some CPUs process them many times
    slower): sgemm and elementwise-multiply time on denormal inputs over normal ones, without and with
    flush-denormal, each mode in a fresh process."""
    from rnnlab.bench.variants import in_fresh_process

    plain, flushed = (in_fresh_process(denormal_timings, flush, size) for flush in (False, True))
    return {"size": size, "unflushed": plain, "flushed": flushed,
            "gemm_denormal_slowdown": plain["gemm_denormal_s"] / plain["gemm_normal_s"],
            "mul_denormal_slowdown": plain["mul_denormal_s"] / plain["mul_normal_s"],
            "gemm_denormal_slowdown_flushed": flushed["gemm_denormal_s"] / flushed["gemm_normal_s"],
            "mul_denormal_slowdown_flushed": flushed["mul_denormal_s"] / flushed["mul_normal_s"]}


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
