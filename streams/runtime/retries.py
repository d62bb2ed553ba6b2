"""How aiokafka's producer retries of partitions not ready yet are logged: INFO while brief, WARNING once they last."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

#: aiokafka's sender, which logs each produce request a partition's leader turned away and it sends again.
SENDER_LOGGER = "aiokafka.producer.sender"
RETRY_MESSAGE = "Got error produce response on topic-partition"
#: Retriable answers that a new partition or transaction gives for a moment: a leader that has not made the
#: partition's log yet, or Kafka 4's check that a partition joined a transaction, which answers
#: NotEnoughReplicas to a client of the older transaction protocol (aiokafka) while the coordinator is
#: still busy with the transaction.
TRANSIENT = ("NotEnoughReplicasError", "NotLeaderForPartitionError")
#: A partition turned away for longer than this is worth a warning: a broker down, or its ISR too small.
GRACE_SECONDS = 5.0


class BriefRetriesAtInfo(logging.Filter):
    """Logs at INFO a partition's transient produce retries while they have lasted under GRACE_SECONDS, and
    at WARNING, as aiokafka does, once they last longer. aiokafka sends each such request again at once and
    nothing is lost, but it warns of every one: on a first start each new partition's first transaction
    made a burst of them."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, grace: float = GRACE_SECONDS) -> None:
        super().__init__()
        self.clock = clock
        self.grace = grace
        #: Per partition: when its current run of retries began, and when it was last retried.
        self.runs: dict[str, tuple[float, float]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.WARNING or not str(record.msg).startswith(RETRY_MESSAGE):
            return True
        args = record.args if isinstance(record.args, tuple) else ()
        error = str(args[1]) if len(args) > 1 else ""
        if not any(name in error for name in TRANSIENT):
            return True
        now = self.clock()
        partition = str(args[0]) if args else ""
        began, last = self.runs.get(partition, (now, now))
        if now - last > self.grace:  # an earlier run that ended: this is a new one
            began = now
        self.runs[partition] = (began, now)
        if now - began <= self.grace:
            record.levelno, record.levelname = logging.INFO, logging.getLevelName(logging.INFO)
        return True


def install_retry_logging() -> None:
    """Puts the filter on aiokafka's sender logger once per process."""
    logger = logging.getLogger(SENDER_LOGGER)
    if not any(isinstance(existing, BriefRetriesAtInfo) for existing in logger.filters):
        logger.addFilter(BriefRetriesAtInfo())
