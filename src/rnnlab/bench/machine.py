"""Which CPU a figure was measured on: the two kinds this project runs on rank implementations differently (MKL's
and oneDNN's kernels differ by vendor, and so do the costs of denormal floats), so every result names its CPU and
is kept per kind (data/bench/train-<kind>.json)."""

from __future__ import annotations

import platform
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
