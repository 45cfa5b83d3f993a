"""What every worker process rnnlab starts needs: to end with the process that started it.

Shared by data/ (prepare's readers), run/ (ddp_spawn workers) and findings/ (the adding sweep's runs); it lives at
the root because data/ comes before run/ in the flow and imports nothing from it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal


def die_with_parent(parent: int | None = None) -> None:
    """Have the kernel kill this process when its parent dies (Linux). An orphaned worker would otherwise live on:
    a ddp_spawn worker training into a run and checkpoint folder that a rerun resumes meanwhile; a prepare reader
    waiting forever on its task queue, whose other ends its sibling readers hold open. `parent`: the pid the
    caller expects as parent (os.getpid() in the parent, given to the child): if it died before the request was in
    place, this process ends now; without it, a parent already gone by the time this runs goes unnoticed."""
    PR_SET_PDEATHSIG = 1
    parent = os.getppid() if parent is None else parent
    try:
        ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError, TypeError):
        return
    if os.getppid() != parent:  # the parent died before the request was in place
        os.kill(os.getpid(), signal.SIGKILL)
