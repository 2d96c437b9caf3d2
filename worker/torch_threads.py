"""torch's thread count when several processes share one machine's cores.

torch starts one OpenMP thread per core in every process. When processes already fill the
cores, those threads wait for each other at every barrier while another process holds
the cores: on 2 cores, a CLIP-judge run that took 6 s alone took 36 s beside one other
busy process, and 7 s with one thread. JAX's own thread pool does not suffer from it
(a VQ training test measured the same with one thread), so only torch is limited.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

OMP_THREADS_ENV = "OMP_NUM_THREADS"


def with_core_share(env: Mapping[str, str], processes: int) -> dict[str, str]:
    """`env` with torch's threads set to this process's share of the cores.

    Args:
        env: The environment the process will run with.
        processes: How many such processes share the machine's cores.

    Returns:
        A copy of `env`; with more than one process and no `OMP_NUM_THREADS` in it (a
        value someone set is kept), `OMP_NUM_THREADS` = cores / processes, at least 1.
    """
    env = dict(env)
    if processes > 1 and OMP_THREADS_ENV not in env:
        env[OMP_THREADS_ENV] = str(max(1, (os.cpu_count() or 1) // processes))
    return env
