"""A record's table writes: applied to the local store at once, sent to the changelogs in the record's outbox."""

from __future__ import annotations

import asyncio
from typing import Any

from faust.stores.memory import Store as MemoryStore
from faust.streams import current_event
from faust.types import TableT

from streams.runtime.outbox import Delivered, RecordOutbox


class ChangelogWrites:
    """Writes to changelog-backed tables on behalf of the input record in hand.

    A plain `table[key] = value` queues the changelog record in Faust's producer buffer, which sends it
    later: its transaction is then whichever is open at that moment (possibly the next one, so a crash
    could keep the record's offset and alerts but lose its state), and each write costs several Faust
    objects, a buffer round and callbacks. Here the local store takes the value at once (later reads in
    the same record see it) and the changelog record joins the record's outbox, which sends it with the
    record's alerts, once per key and transaction.
    """

    def __init__(self, outbox: RecordOutbox) -> None:
        self.outbox = outbox
        #: Per table: its changelog topic's name, and what to do when a write to it is delivered.
        self.changelogs: dict[int, tuple[str, Delivered | None]] = {}

    def set(self, table: TableT, key: bytes, value: bytes) -> None:
        self._write(table, key, value)

    def delete(self, table: TableT, key: bytes) -> None:
        self._write(table, key, None)

    def _write(self, table: TableT, key: bytes, value: bytes | None) -> None:
        event = current_event()
        if event is None:
            raise RuntimeError("tables are written only while an input record is in hand")
        tp = event.message.tp
        self.outbox.remember(table, key, tp)
        self.outbox.note_write(table.data, key)
        if value is None:
            del table.data[key]
        else:
            table.data[key] = value
        changelog = self.changelogs.get(id(table))
        if changelog is None:
            changelog = self.changelogs[id(table)] = _changelog_of(table)
        # A table's changelog partition is its input's: that is where recovery looks for the key.
        self.outbox.stage(changelog[0], key, value, tp.partition, changelog[1], latest_only=True)


def _changelog_of(table: TableT) -> tuple[str, Delivered | None]:
    # The memory store keeps no changelog offsets (it is rebuilt from the start of each changelog), so its
    # writes need no callback once delivered.
    keeper = None if isinstance(table.data, MemoryStore) else _offset_keeper(table)
    return table.changelog_topic.get_topic_name(), keeper


def _offset_keeper(table: TableT) -> Delivered:
    """A delivery callback that records the changelog offset a persistent store has reached, as Faust's own
    changelog sends do (under exactly_once it is kept until the transaction commits), so that a restart
    reads the changelog only from there."""

    def keep(delivery: asyncio.Future[Any]) -> None:
        if delivery.cancelled() or delivery.exception() is not None:
            return
        # Faust's own callback for its changelog sends; it only reads `.result()`, which the delivery has.
        table._on_changelog_sent(delivery)  # type: ignore[attr-defined]

    return keep
