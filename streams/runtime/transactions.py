"""Commits: the transaction manager, the producer, and the hooks that run what waits for a commit."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from aiokafka.errors import ProducerFenced
from faust.transport.consumer import TransactionManager
from faust.transport.drivers.aiokafka import Producer
from faust.types import TP

from streams.runtime.outbox import transactional_id


class CommitHooks(Protocol):
    """What the worker's commits run besides Faust's own: the record outbox implements it."""

    async def send_pending(self, transaction: str) -> None:
        """Sends what waits for a transaction, before it commits."""

    async def confirm_sent(self) -> None:
        """Returns once every message sent without a transaction is acknowledged; raising stops the commit."""

    def roll_back(self, transactions: Iterable[str]) -> int:
        """Forgets what waits for transactions that will never commit; returns how many table keys it put back."""


class NoCommitHooks:
    """Commits with nothing of the worker's own to send, as Faust's would."""

    async def send_pending(self, transaction: str) -> None:
        return None

    async def confirm_sent(self) -> None:
        return None

    def roll_back(self, transactions: Iterable[str]) -> int:
        return 0


NO_HOOKS: CommitHooks = NoCommitHooks()


async def drain(buffer: Any) -> None:
    """Returns once Faust's producer buffer has handed every queued message on to be sent.

    The buffer's flush gives up after 0.1 s without a message sent, hence the loop. A message the buffer
    has taken already waits on (or holds) its transaction's lock, which the commit takes after it."""
    while buffer.size:
        await buffer.flush()


class RevocationSafeTransactionManager(TransactionManager):
    """Faust's transaction manager, with three changes.

    A commit first drains Faust's producer buffer. The worker's own table writes and alerts no longer pass
    through it (see streams.runtime.outbox.RecordOutbox), but anything Faust sends there for a record must
    join the transaction that commits the record's offset, and Faust commits without waiting for the buffer.

    Partitions' transactions are committed concurrently, so a commit interval costs one partition's round
    trips, not their sum (docs/decisions/003).

    A rebalance stops the transactional producer of every partition this worker no longer owns, standbys
    included: one left running would be fenced by the partition's new owner, and fail this worker should
    the partition come back.

    `hooks` (installed by the app factory) send what waits for each partition's commit before it, and put
    back what waited for the transactions of partitions lost."""

    hooks: CommitHooks = NO_HOOKS

    async def commit(self, offsets: Mapping[TP, int], start_new_transaction: bool = True) -> bool:
        await drain(self.producer.buffer)
        group_id = self.app.conf.id
        by_transaction: dict[str, dict[TP, int]] = defaultdict(dict)
        for tp, offset in offsets.items():
            by_transaction[transactional_id(self.app, tp)][tp] = offset
        outcomes = await asyncio.gather(
            *(
                self._commit_one(transaction, tp_offsets, group_id, start_new_transaction)
                for transaction, tp_offsets in by_transaction.items()
            ),
            return_exceptions=True,  # every partition's commit ends before this one returns
        )
        failures = [outcome for outcome in outcomes if isinstance(outcome, BaseException)]
        fenced = [failure for failure in failures if isinstance(failure, ProducerFenced)]
        if len(fenced) < len(failures):
            raise next(failure for failure in failures if not isinstance(failure, ProducerFenced))
        if fenced:
            # As Faust does: another worker owns the partition now; crash, to be restarted and rebalanced.
            self.log.warning("Producer fenced: %r", fenced[0])
            await self.app.crash(fenced[0])
        return True

    async def _commit_one(
        self, transaction: str, offsets: dict[TP, int], group_id: str, start_new_transaction: bool
    ) -> None:
        await self.hooks.send_pending(transaction)
        await self.producer.commit_transactions({transaction: offsets}, group_id, start_new_transaction)

    async def on_rebalance(self, assigned: set[TP], revoked: set[TP], newly_assigned: set[TP]) -> None:
        keep = self._tps_to_transactional_ids(assigned)
        producers: dict[str, Any] = getattr(self.producer, "_transaction_producers", {})
        stale = sorted(tid for tid in producers if tid not in keep)
        if stale:
            self.log.info("Stopping %d transactional producers of partitions no longer owned", len(stale))
            await self._stop_transactions(stale)
            restored = self.hooks.roll_back(stale)
            if restored:
                self.log.info(
                    "Put %d table keys back as last committed: their partitions' transactions never will", restored
                )
        await super().on_rebalance(assigned, revoked, newly_assigned)


class WorkerProducer(Producer):
    """Faust's aiokafka producer with the retry backoff of the settings.

    A transactional producer's first request of a transaction is often turned away while the broker still
    writes the markers of the last one (CONCURRENT_TRANSACTIONS, or NOT_ENOUGH_REPLICAS from its check that
    a partition joined the transaction); aiokafka then waits its 0.1 s default before trying again, and the
    commit, with every alert in it, waits as long."""

    retry_backoff_ms: int = 100

    def _settings_extra(self) -> Mapping[str, Any]:
        return {**super()._settings_extra(), "retry_backoff_ms": self.retry_backoff_ms}

