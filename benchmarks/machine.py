"""What a benchmark ran on, recorded beside its figures."""

from __future__ import annotations

import os
import platform
import resource
from pathlib import Path


def peak_rss_mib() -> float:
    """This process's peak resident memory in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def machine() -> dict:
    """CPU model, cores, memory, platform and TensorFlow version."""
    model_name = "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model_name = line.split(":", 1)[1].strip()
                break
    memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    import tensorflow as tf

    return {"cpu": model_name, "cores": os.cpu_count(), "memory_gib": round(memory_gib, 1),
            "platform": platform.platform(), "python": platform.python_version(),
            "tensorflow": tf.__version__, "gpu": bool(tf.config.list_physical_devices("GPU"))}
