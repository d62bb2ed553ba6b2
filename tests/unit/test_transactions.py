"""A worker's commit waits for the table writes queued before it, so they join the committed transaction."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from faust.transport.consumer import TransactionManager
from faust.transport.producer import ProducerBuffer
from faust.types import TP

from streams.app import RevocationSafeTransactionManager, drain


class SlowBuffer(ProducerBuffer):
    """Faust's own buffer and flush, with a producer that takes longer per message than flush waits.

    Like Faust's aiokafka driver, a send holds its transaction's lock, which a commit also takes."""

    def __init__(self) -> None:
        super().__init__()
        self.app = SimpleNamespace(conf=SimpleNamespace(producer_threaded=False))  # type: ignore[assignment]
        self.sent: list[Any] = []
        self.transaction_lock = asyncio.Lock()

    async def _send_pending(self, fut: Any) -> None:
        async with self.transaction_lock:
            await asyncio.sleep(0.15)
            self.sent.append(fut)


async def test_drain_outlasts_faust_flush_giving_up() -> None:
    buffer = SlowBuffer()
    await buffer.start()
    try:
        for change in range(3):
            buffer.put(change)  # type: ignore[arg-type]
        await buffer.flush()
        assert buffer.size > 0, "Faust's flush alone returns with writes still queued"

        await drain(buffer)

        assert buffer.size == 0
        assert buffer.sent[:2] == [0, 1]
    finally:
        await buffer.stop()


async def test_commit_starts_only_after_queued_table_writes_have_gone(monkeypatch: pytest.MonkeyPatch) -> None:
    buffer = SlowBuffer()
    await buffer.start()
    seen_at_commit: list[tuple[int, list[Any]]] = []

    async def faust_commit(self: TransactionManager, offsets: Any, start_new_transaction: bool = True) -> bool:
        async with buffer.transaction_lock:
            seen_at_commit.append((buffer.size, list(buffer.sent)))
        return True

    monkeypatch.setattr(TransactionManager, "commit", faust_commit)
    app = SimpleNamespace(conf=SimpleNamespace(id="rollwatch"))
    manager = RevocationSafeTransactionManager(
        SimpleNamespace(app=app),  # type: ignore[arg-type]
        consumer=SimpleNamespace(),  # type: ignore[arg-type]
        producer=SimpleNamespace(buffer=buffer),  # type: ignore[arg-type]
    )
    try:
        for change in ("state-a", "state-b", "deadline-a"):
            buffer.put(change)  # type: ignore[arg-type]

        assert await manager.commit({TP("roll.events", 0): 42})

        assert seen_at_commit == [(0, ["state-a", "state-b", "deadline-a"])]
    finally:
        await buffer.stop()
