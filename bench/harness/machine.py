"""What a benchmark ran on, recorded with every result: figures on a shared machine need its load beside them."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any


def machine() -> dict[str, Any]:
    """Platform, cores, CPU model, memory and the load average (1, 5, 15 min) at the time of the call."""
    info: dict[str, Any] = {"platform": platform.platform(), "cores": os.cpu_count(), "load_average": os.getloadavg()}
    for path, key, field_name in (("/proc/cpuinfo", "model name", "cpu"), ("/proc/meminfo", "MemTotal", "memory")):
        try:
            for line in Path(path).read_text().splitlines():
                if line.startswith(key):
                    info[field_name] = line.split(":", 1)[1].strip()
                    break
        except OSError:
            pass
    info["cpu_flags"] = cpu_flags()
    return info


# The instruction sets the encoder's kernels choose between (onnxruntime's MLAS, oneDNN): vector width, fused
# multiply-add, the integer dot products int8 needs (VNNI) and Intel's matrix units (AMX).
_KERNEL_FLAGS = ("avx", "avx2", "fma", "f16c", "avx_vnni", "amx", "avx512")


def cpu_flags() -> list[str]:
    """The CPU's flags that decide which encoder kernels run (from /proc/cpuinfo; empty where there is none)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = line.split(":", 1)[1].split()
                return sorted(f for f in flags if f in _KERNEL_FLAGS or f.startswith(("avx512", "amx")))
    except OSError:
        pass
    return []
