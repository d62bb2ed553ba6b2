"""The one place that touches Faust and aiokafka internals: consumer, transactions, the outbox and table writes."""

#: Every private member of Faust, aiokafka or mode used here, and where: what to check at each upgrade.
#: tests/unit/test_faust_internals.py keeps it exact and confines their use to this package.
FAUST_PRIVATE_MEMBERS: dict[str, str] = {
    # consumer.py: faust.transport.drivers.aiokafka.AIOKafkaConsumerThread
    "_create_worker_consumer": "consumer.py: WorkerConsumerThread overrides it to set the fetch wait",
    "_fetch_max_wait_ms": "consumer.py: aiokafka AIOKafkaConsumer attribute, set before its fetcher is built",
    "_fetch_records": "consumer.py: WorkerConsumerThread overrides it to stamp each fetch with the seek count",
    "_consumer": "consumer.py: the thread's aiokafka consumer, whose client is closed on a cancelled stop",
    "_client": "consumer.py: aiokafka AIOKafkaConsumer's client, closed when its stop is cancelled",
    "_ensure_consumer": "consumer.py: WorkerConsumerThread.rewind gets the aiokafka consumer to seek",
    # consumer.py: faust.transport.consumer.Consumer / faust.transport.drivers.aiokafka.Consumer
    "_new_consumer_thread": "consumer.py: WorkerConsumer overrides it to run its own thread class",
    "_read_offset": "consumer.py: WorkerConsumer replaces it with ReadOffsets and sets it on each seek",
    "_committed_offset": "consumer.py: WorkerConsumer sets it on each seek and reads it for held commits",
    "_acked": "consumer.py: WorkerConsumer._new_offset reads the acknowledged offsets of a held partition",
    "_getmany": "consumer.py: WorkerConsumer overrides it to note the seek count of the fetch in hand",
    "_commit_handler": "consumer.py: WorkerConsumer overrides the commit timer (interval from start to start)",
    "_commit_livelock_detector": "consumer.py: WorkerConsumer overrides Faust's stalled-partition check's timer",
    "_new_offset": "consumer.py: WorkerConsumer overrides it to notice partitions whose commits are held",
    "_commit_offsets": "consumer.py: WorkerConsumer overrides it to confirm sent messages first (at_least_once)",
    "_thread": "consumer.py: WorkerConsumer.commit rewinds held partitions through its consumer thread",
    # transactions.py: faust.transport.consumer.TransactionManager, faust.transport.drivers.aiokafka.Producer
    "_tps_to_transactional_ids": "transactions.py: the transactional ids of the partitions kept at a rebalance",
    "_stop_transactions": "transactions.py: stops the producers of partitions no longer owned",
    "_transaction_producers": "transactions.py, outbox.py: Faust's aiokafka producer per transactional id",
    "_settings_extra": "transactions.py: WorkerProducer overrides it to add retry_backoff_ms",
    # outbox.py
    "_trn_locks": "outbox.py: Faust's lock per transactional id, held while the outbox sends",
    "_producer": "outbox.py: the aiokafka producer behind Faust's, under at_least_once",
    "_topics": "outbox.py: the topics an aiokafka client names in its metadata requests (keep_in_metadata)",
    "_db_for_partition": "outbox.py: put_back opens a RocksDB partition with no record in hand",
    "_dbs": "outbox.py: put_back lets go of a RocksDB partition it opened",
    # tablewrites.py
    "_on_changelog_sent": "tablewrites.py: a persistent table's callback recording its changelog offset",
    # stopping.py: mode.Worker
    "_on_sigterm": "stopping.py: RollwatchWorker overrides it to start the stop deadline",
    "_on_sigint": "stopping.py: RollwatchWorker overrides it to start the stop deadline",
}
