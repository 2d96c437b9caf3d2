"""What a training run ran on: library versions, the JAX devices and the CPU.

The build prints it first and keeps it in its summary; the VQ and base trainers write it
into their run records (`machine`) each time they export, so the zoo's manifest says where
each part was last trained (a finished run rerun elsewhere exports again and says so).
"""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any


def cpu_model() -> str:
    """The CPU's model name ("AMD EPYC 7B13"), or the platform's processor string."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def machine_description() -> dict[str, Any]:
    """Versions, JAX devices, the CPU model and the cores this process may use."""
    import flax
    import jax
    import optax
    import torch

    devices = jax.devices()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "python": platform.python_version(),
        "jax": jax.__version__,
        "flax": flax.__version__,
        "optax": optax.__version__,
        "torch": torch.__version__,
        "jax_backend": jax.default_backend(),
        "jax_devices": [f"{d.platform}:{d.device_kind}" for d in devices],
        "torch_cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "machine": platform.machine(),
        "cpu": cpu_model(),
        "cpu_cores": cores,
    }
