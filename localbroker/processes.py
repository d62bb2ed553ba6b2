"""Child processes that end with their parent: the run command's worker and sync, the benchmarks' workers."""

from __future__ import annotations

import ctypes
import signal
from collections.abc import Callable

#: prctl option that delivers a signal to a child when its parent dies.
_PR_SET_PDEATHSIG = 1

# Loaded here, in the parent, so that the child between fork and exec only calls a function pointer: no
# import, no dlopen, no lock that another thread (a Kafka client's) might hold at fork time.
try:
    _LIBC: ctypes.CDLL | None = ctypes.CDLL(None, use_errno=True)
except OSError:
    _LIBC = None


def dies_with_parent(death_signal: signal.Signals) -> Callable[[], None]:
    """A Popen preexec_fn: the child gets `death_signal` when its parent dies, even by SIGKILL."""
    number = int(death_signal)

    def arrange() -> None:
        if _LIBC is not None:
            _LIBC.prctl(_PR_SET_PDEATHSIG, number)

    return arrange
