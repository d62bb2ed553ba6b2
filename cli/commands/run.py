"""`rollwatch run`: the whole pipeline on this machine: local Kafka, a worker, the register, a half-term, alerts."""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from config.settings import DashboardCredential, Settings

DEMO_FROM = date(2025, 2, 24)  # the first day of the spring half-term after February's break
DEMO_TO = date(2025, 4, 11)
#: The LA whose dashboard URL is printed first: the largest, so it has the most to show.
HEADLINE_LA = "330"
#: How long the register may take to hold every alert printed, once the half-term is published.
REGISTER_CATCH_UP_SECONDS = 60.0
REGISTER_SYNC = "register sync"
#: `register sync` stops between two batches; longer than this means it is not listening.
SYNC_STOP_SECONDS = 10.0


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "run",
        help="demo: local Kafka, a worker, the register and a dashboard; streams a generated half-term",
        description=(
            "Starts the local Kafka broker (or uses the one already running in ROLLWATCH_BROKER_DATA_DIR), a "
            "worker with its web server (LA dashboards and metrics), `register sync` into a fresh SQLite "
            "register, and publishes a generated half-term of roll changes for the 14 West Midlands LAs, one "
            "school day at a time with the clock accelerated; alerts are printed as the worker raises them. "
            "Each run uses its own topic prefix, register and dashboard tokens, so it always starts from a clean "
            "slate; the tokens are made up for this run only. After the half-term everything keeps running so "
            "the dashboards can be explored; Ctrl-C stops it all (and the broker, if this run started it: that one "
            "stops with the run however it ends, even killed outright)."
        ),
    )
    parser.add_argument("--pupils", type=int, default=60_000, help="pupils in the generated region (default 60000)")
    parser.add_argument("--seed", type=int, default=2025, help="generator seed (default 2025)")
    parser.add_argument(
        "--day-seconds", type=float, default=0.5, help="wall-clock seconds per school day (default 0.5)"
    )
    parser.add_argument(
        "--web-port", type=int, default=None,
        help="port of the worker's web server (default ROLLWATCH_WEB_PORT, or a free port if that one is taken)",
    )
    parser.add_argument(
        "--exit-when-done", action="store_true",
        help="stop everything once the half-term is published and the register has caught up",
    )
    parser.set_defaults(handler=run)


@dataclass
class DemoPaths:
    """Everything one run writes, in one directory."""

    root: Path

    @property
    def worker_data(self) -> Path:
        return self.root / "worker"

    @property
    def worker_log(self) -> Path:
        return self.root / "worker.log"

    @property
    def sync_log(self) -> Path:
        return self.root / "register-sync.log"

    @property
    def register_url(self) -> str:
        return f"sqlite:///{self.root / 'register.db'}"


#: The role of each demo token: the CME officer's page, which shows the LA's cases and CME alerts.
DEMO_ROLE = "cme-officer"


def demo_tokens(la_codes: list[str]) -> dict[str, SecretStr]:
    """A fresh random token (256 bits) per LA, for this local run only: real deployments set
    ROLLWATCH_DASHBOARD_TOKENS."""
    return {code: SecretStr(secrets.token_urlsafe(32)) for code in la_codes}


def demo_credentials(tokens: dict[str, SecretStr]) -> dict[str, DashboardCredential]:
    """ROLLWATCH_DASHBOARD_TOKENS for the demo tokens: only their hashes reach the worker's settings."""
    return {
        f"demo-{code}": DashboardCredential(
            la=code, role=DEMO_ROLE, sha256=hashlib.sha256(token.get_secret_value().encode()).hexdigest()
        )
        for code, token in tokens.items()
    }


def port_is_free(host: str, port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
        return True


def pick_web_port(host: str, wanted: int) -> int:
    """`wanted` if nothing listens there, else a free port: a second demo must not fail on a busy 6066."""
    if port_is_free(host, wanted):
        return wanted
    with socket.socket() as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


def browser_host(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host  # noqa: S104 - recognising, not binding


def dashboard_url(base: str, la_code: str) -> str:
    """The page's URL; the token is typed into its sign-in form, never put in a URL."""
    return f"{base}/la/{la_code}/"


def _alert_printer(settings: Settings, stop: threading.Event, counts: dict[str, int]) -> None:
    from kafka import KafkaConsumer

    from cli.commands.alerts import topic_pattern
    from config.kafka import client_options
    from processors.records import Alert
    from schemas.codec import AvroCodec

    codec = AvroCodec()
    consumer = KafkaConsumer(
        auto_offset_reset="earliest", isolation_level="read_committed", metadata_max_age_ms=2000,
        consumer_timeout_ms=500, enable_auto_commit=False, **client_options(settings),
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


class Children:
    """The run's subprocesses, each in its own session so that a terminal's Ctrl-C reaches only `run`, which
    then stops them in order: the worker first (it commits), then the register sync."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.started: list[tuple[str, subprocess.Popen[bytes], Path]] = []

    def start(self, name: str, arguments: list[str], log_path: Path) -> subprocess.Popen[bytes]:
        with log_path.open("ab") as log:
            process = subprocess.Popen(  # noqa: S603 - this interpreter and our own CLI
                [sys.executable, "-m", "cli.main", *arguments], env=self.env, stdout=log,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                # If `run` itself is killed outright nobody is left to stop the children in order, and a worker
                # whose broker is gone can hang in its graceful stop; exactly_once makes a hard stop safe.
                preexec_fn=_dies_with_parent(),
            )
        self.started.append((name, process, log_path))
        return process

    def first_stopped(self) -> tuple[str, Path] | None:
        for name, process, log_path in self.started:
            if process.poll() is not None:
                return name, log_path
        return None

    def stop_all(self, timeout: float = 60.0) -> None:
        """Asks each child to stop, waits, and escalates: SIGTERM, then SIGKILL, so nothing is left behind."""
        for name, process, _log in self.started:
            if process.poll() is None:
                # Faust shuts down cleanly on SIGTERM; `register sync` on SIGINT (it stops between batches).
                process.send_signal(signal.SIGINT if name == REGISTER_SYNC else signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for name, process, _log in self.started:
            # A child whose SIGINT is ignored (started under nohup, say) still ends on SIGTERM.
            patience = min(SYNC_STOP_SECONDS, timeout) if name == REGISTER_SYNC else timeout
            for escalation in (signal.SIGTERM, signal.SIGKILL):
                try:
                    process.wait(timeout=max(0.0, min(patience, deadline - time.monotonic())))
                    break
                except subprocess.TimeoutExpired:
                    process.send_signal(escalation)
                    patience = SYNC_STOP_SECONDS
            process.wait()


@contextlib.contextmanager
def _ignoring_interrupts() -> Iterator[None]:
    """A second Ctrl-C (or SIGTERM) while stopping would leave orphans behind; stopping is quick, so let it end."""
    previous = {number: signal.signal(number, signal.SIG_IGN) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def _wait_for_register(register_url: str, wanted_alerts: Callable[[], int], timeout: float) -> tuple[int, int]:
    """Waits until the register holds as many alerts as were printed; returns (alerts, open cases)."""
    from sinks.register import CaseQuery, CaseStatus, Register

    register = Register.from_url(register_url)
    try:
        deadline = time.monotonic() + timeout
        while True:
            held = register.counts()["alerts"]
            if held >= wanted_alerts() or time.monotonic() > deadline:
                return held, len(register.cases(CaseQuery(status=CaseStatus.OPEN)))
            time.sleep(0.5)
    finally:
        register.close()


def _interrupt(_signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt


def run(args: argparse.Namespace, settings: Settings) -> int:
    # `kill <pid>` (a service manager, a CI timeout) then stops everything as cleanly as Ctrl-C does.
    signal.signal(signal.SIGTERM, _interrupt)
    from cli.commands.publish import connection_of
    from generator.generate import generate_lines
    from generator.options import WEST_MIDLANDS, GeneratorOptions
    from localbroker.launcher import BrokerError, LocalCluster
    from processors.records import ClockTick
    from rollwatch_client.ordering import AppliedOffsets, OrderedSender
    from rollwatch_client.publisher import InputPublisher
    from schemas.jsonformat import parse_line
    from sinks.register import create_register_engine, migrate
    from streams.topics import ensure_worker_topics

    cluster = LocalCluster.for_data_dir(
        settings.broker_data_dir, default_base_port=settings.broker_port, cache_dir=settings.broker_cache_dir,
        heap=settings.broker_heap,
    )
    try:
        # A node left behind by a run that ended without stopping it is stopped now, not adopted for good.
        cluster.stop_orphans()
    except BrokerError as error:
        print(f"rollwatch run: {error}", file=sys.stderr)
        return 1
    was_running = all(node.running for node in cluster.status())
    children: Children | None = None
    stop = threading.Event()
    printer: threading.Thread | None = None
    exit_code = 0
    interrupted = False
    try:
        try:
            # A node this run starts dies with it, even if it is killed outright (SIGKILL, OOM) and so never
            # reaches the stop below; a node it found running was started for longer and is left as it is.
            bootstrap = cluster.start(timeout=settings.broker_start_timeout, die_with_this_process=True)
        except BrokerError as error:
            print(f"rollwatch run: {error}", file=sys.stderr)
            return 1
        demo_id = time.strftime("%Y%m%d%H%M%S")
        paths = DemoPaths(Path(settings.data_dir) / f"demo-{demo_id}")
        paths.root.mkdir(parents=True, exist_ok=True)
        # An explicit ROLLWATCH_DATABASE_URL is honoured; otherwise each run gets its own register file.
        register_url = settings.database_url if "database_url" in settings.model_fields_set else paths.register_url
        web_port = args.web_port if args.web_port is not None else pick_web_port(settings.web_host, settings.web_port)
        tokens = demo_tokens([la.code for la in WEST_MIDLANDS])
        demo = settings.model_copy(
            update={
                "bootstrap_servers": bootstrap,
                "topic_prefix": f"demo{demo_id}.",
                "app_id": f"rollwatch-demo-{demo_id}",
                "register_group": f"rollwatch-register-demo-{demo_id}",
                "data_dir": paths.worker_data,
                "database_url": register_url,
                "web_enabled": True,
                "web_port": web_port,
                "dashboard_tokens": demo_credentials(tokens),
            }
        )
        print(f"Kafka at {bootstrap}; this run's topics start with {demo.topic_prefix}", flush=True)
        ensure_worker_topics(demo)
        engine = create_register_engine(register_url)
        try:
            migrate(engine)
        finally:
            engine.dispose()
        children = Children({**os.environ, **demo.as_environment()})
        worker = children.start("worker", ["worker"], paths.worker_log)
        sync = children.start(REGISTER_SYNC, ["register", "sync"], paths.sync_log)
        base = f"http://{browser_host(demo.web_host)}:{web_port}"
        print(f"Worker started (pid {worker.pid}, log {paths.worker_log}).", flush=True)
        print(f"Register sync started (pid {sync.pid}, log {paths.sync_log}) into {register_url}", flush=True)
        print(f"Metrics: {base}/metrics", flush=True)
        print(f"Dashboard ({HEADLINE_LA} Birmingham): {dashboard_url(base, HEADLINE_LA)}", flush=True)
        print(f"  token {tokens[HEADLINE_LA].get_secret_value()}", flush=True)
        print(f"Demo dashboard tokens ({DEMO_ROLE}), made up for this run only; paste one into its page's sign-in "
              "form (real deployments set ROLLWATCH_DASHBOARD_TOKENS to hashes):", flush=True)
        for la in WEST_MIDLANDS:
            print(f"  {la.code} {la.name:<19} {dashboard_url(base, la.code)}", flush=True)
            print(f"    token {tokens[la.code].get_secret_value()}", flush=True)

        counts = {"alerts": 0}
        printer = threading.Thread(target=_alert_printer, args=(demo, stop, counts), daemon=True)
        printer.start()
        lines = generate_lines(GeneratorOptions(pupils=args.pupils, seed=args.seed, start=DEMO_FROM, end=DEMO_TO))
        records = 0
        connection = connection_of(demo)
        with InputPublisher(connection) as publisher:
            applied = AppliedOffsets(connection, demo.app_id)
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
                stopped = children.first_stopped()
                if stopped is not None:
                    print(f"rollwatch run: the {stopped[0]} stopped; see {stopped[1]}", file=sys.stderr)
                    return 1
            ordered.barrier()
            applied.close()
        time.sleep(2)
        print(f"Half-term done: {records:,} records, {counts['alerts']:,} alerts.", flush=True)
        held, open_cases = _wait_for_register(register_url, lambda: counts["alerts"], REGISTER_CATCH_UP_SECONDS)
        print(f"Register: {held:,} alerts, {open_cases:,} open cases. Browse it with: "
              f"ROLLWATCH_DATABASE_URL={register_url} rollwatch cases list --la {HEADLINE_LA} --status open",
              flush=True)
        print(f"Read the alerts again with: ROLLWATCH_TOPIC_PREFIX={demo.topic_prefix} rollwatch alerts "
              "--from-beginning", flush=True)
        if not args.exit_when_done:
            print(f"Still running: open the dashboard at {dashboard_url(base, HEADLINE_LA)} and sign in with its "
                  "token above; Ctrl-C to stop.", flush=True)
            while (stopped := children.first_stopped()) is None:
                time.sleep(0.5)
            print(f"rollwatch run: the {stopped[0]} stopped; see {stopped[1]}", file=sys.stderr)
            exit_code = 1
    except KeyboardInterrupt:
        interrupted = True
    finally:
        with _ignoring_interrupts():
            if interrupted:
                print("\nStopping...", flush=True)
            stop.set()
            if children is not None:
                children.stop_all()
            if printer is not None:
                printer.join(timeout=5)
            if not was_running:
                cluster.stop()
    if exit_code == 0:
        print("Stopped.", flush=True)
    return exit_code


def _dies_with_parent() -> Callable[[], None]:
    from localbroker.processes import dies_with_parent

    return dies_with_parent(signal.SIGKILL)
