"""Installs the worker's consumer, producer and transaction manager, with their commit hooks, in a Faust app."""

from __future__ import annotations

import faust

from streams.runtime.consumer import WorkerConsumer, WorkerConsumerThread
from streams.runtime.retries import install_retry_logging
from streams.runtime.transactions import CommitHooks, RevocationSafeTransactionManager, WorkerProducer


def install_runtime(app: faust.App, hooks: CommitHooks, *, fetch_max_wait: float, retry_backoff: float) -> None:
    """Makes the app's transport build the worker's own classes, which call `hooks` around each commit.

    Building the transport object opens no connection; it only picks the classes the worker will use."""
    install_retry_logging()
    transport = app.transport
    transport.TransactionManager = type(  # type: ignore[misc]
        "RevocationSafeTransactionManager", (RevocationSafeTransactionManager,), {"hooks": hooks}
    )
    thread_class = type(
        "WorkerConsumerThread", (WorkerConsumerThread,), {"fetch_max_wait_ms": round(fetch_max_wait * 1000)}
    )
    transport.Consumer = type(  # type: ignore[misc]
        "WorkerConsumer", (WorkerConsumer,), {"thread_class": thread_class, "hooks": hooks}
    )
    transport.Producer = type(  # type: ignore[misc]
        "WorkerProducer", (WorkerProducer,), {"retry_backoff_ms": round(retry_backoff * 1000)}
    )
