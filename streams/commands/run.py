"""`rollwatch run`: the whole pipeline on this machine: local Kafka, a worker, a generated half-term, alerts."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from datetime import date
from pathlib import Path
from typing import Any

from streams.settings import Settings

DEMO_FROM = date(2025, 2, 24)  # the first day of the spring half-term after February's break
DEMO_TO = date(2025, 4, 11)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "run",
        help="demo: start local Kafka and a worker, stream a generated half-term, print alerts as they arrive",
        description=(
            "Starts the local Kafka broker (or uses the one already running in ROLLWATCH_BROKER_DATA_DIR), a "
            "worker, and publishes a generated half-term of roll changes for the 14 West Midlands LAs, one "
            "school day at a time with the clock accelerated; alerts are printed as the worker raises them. "
            "Each run uses its own topic prefix, so it always starts from a clean slate. Ctrl-C stops it all."
        ),
    )
    parser.add_argument("--pupils", type=int, default=60_000, help="pupils in the generated region (default 60000)")
    parser.add_argument("--seed", type=int, default=2025, help="generator seed (default 2025)")
    parser.add_argument(
        "--day-seconds", type=float, default=0.5, help="wall-clock seconds per school day (default 0.5)"
    )
    parser.add_argument("--keep-running", action="store_true", help="after the half-term, wait for Ctrl-C")
    parser.set_defaults(handler=run)


def _alert_printer(settings: Settings, stop: threading.Event, counts: dict[str, int]) -> None:
    from kafka import KafkaConsumer

    from processors.records import Alert
    from schemas.codec import AvroCodec
    from streams.commands.alerts import topic_pattern
    from streams.kafkaclients import client_options

    codec = AvroCodec()
    consumer = KafkaConsumer(
        auto_offset_reset="earliest", isolation_level="read_committed", metadata_max_age_ms=2000,
        consumer_timeout_ms=500, **client_options(settings),
    )
    consumer.subscribe(pattern=topic_pattern(settings, None, None))
    while not stop.is_set():
        for message in consumer:
            alert = codec.decode(message.value, Alert)
            counts["alerts"] += 1
            # The console is not the officer's screen: no names here, just what the alert is about.
            print(
                f"  ALERT {alert.raised_on.isoformat()} {alert.severity:<9} {alert.rule:<26} "
                f"to {alert.recipient} of LA {alert.la_code}  UPN {alert.upn}  school {alert.school_urn}",
                flush=True,
            )
            if stop.is_set():
                break
    consumer.close()


def run(args: argparse.Namespace, settings: Settings) -> int:
    from localbroker.launcher import BrokerError, LocalCluster
    from processors.records import ClockTick
    from schemas.jsonformat import parse_line
    from streams.generator import GeneratorOptions, generate_lines
    from streams.ordering import AppliedOffsets, OrderedSender
    from streams.publisher import InputPublisher
    from streams.topics import ensure_worker_topics

    cluster = LocalCluster.for_data_dir(
        settings.broker_data_dir, default_base_port=settings.broker_port, cache_dir=settings.broker_cache_dir,
        heap=settings.broker_heap,
    )
    was_running = all(node.running for node in cluster.status())
    try:
        bootstrap = cluster.start(timeout=settings.broker_start_timeout)
    except BrokerError as error:
        print(f"rollwatch run: {error}", file=sys.stderr)
        return 1
    demo_id = time.strftime("%Y%m%d%H%M%S")
    demo = settings.model_copy(
        update={
            "bootstrap_servers": bootstrap,
            "topic_prefix": f"demo{demo_id}.",
            "app_id": f"rollwatch-demo-{demo_id}",
            "data_dir": Path(settings.data_dir) / f"demo-{demo_id}",
            "broker_commit_interval": 0.2,
        }
    )
    print(f"Kafka at {bootstrap}; this run's topics start with {demo.topic_prefix}", flush=True)
    ensure_worker_topics(demo)
    env = {**os.environ, **demo.as_environment()}
    log_path = Path(demo.data_dir).with_suffix(".log")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "worker"], env=env, stdout=log, stderr=subprocess.STDOUT
        )
    print(f"Worker started (pid {worker.pid}, log {log_path}).", flush=True)
    stop = threading.Event()
    counts = {"alerts": 0}
    printer = threading.Thread(target=_alert_printer, args=(demo, stop, counts), daemon=True)
    printer.start()
    try:
        lines = generate_lines(
            GeneratorOptions(pupils=args.pupils, seed=args.seed, start=DEMO_FROM, end=DEMO_TO)
        )
        records = 0
        with InputPublisher(demo) as publisher:
            applied = AppliedOffsets(demo)
            ordered = OrderedSender(publisher.producer.flush, applied, timeout=180)
            for line in lines:
                _topic, record = parse_line(line)
                if isinstance(record, ClockTick):
                    time.sleep(args.day_seconds)
                    print(
                        f"-- business date {record.today.isoformat()}: {records:,} records sent, "
                        f"{counts['alerts']:,} alerts so far",
                        flush=True,
                    )
                ordered.before(publisher.publisher_for(record).topic)
                ordered.sent(publisher.publish(record))
                records += 1
                if worker.poll() is not None:
                    print(f"rollwatch run: the worker stopped; see {log_path}", file=sys.stderr)
                    return 1
            ordered.barrier()
            applied.close()
        time.sleep(2)
        print(f"Half-term done: {records:,} records, {counts['alerts']:,} alerts.", flush=True)
        print(f"Read them again with: ROLLWATCH_TOPIC_PREFIX={demo.topic_prefix} rollwatch alerts --from-beginning")
        if args.keep_running:
            print("Worker still running; Ctrl-C to stop.", flush=True)
            worker.wait()
    except KeyboardInterrupt:
        print("\nStopping...", flush=True)
    finally:
        stop.set()
        worker.terminate()
        try:
            worker.wait(timeout=60)
        except subprocess.TimeoutExpired:
            worker.kill()
        printer.join(timeout=5)
        if not was_running:
            cluster.stop()
    return 0

