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
    return info
