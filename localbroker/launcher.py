"""Starts, stops and inspects a local KRaft cluster of 1 or 3 nodes."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import secrets
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from localbroker.certificates import TlsFiles, ensure_tls_files, read_admin_password, write_admin_env
from localbroker.config import (
    ADMIN_ENV_FILE_NAME,
    ADMIN_USER,
    DEFAULT_CACHE_DIR,
    LAYOUT_FILE_NAME,
    LOCALHOST,
    LOG4J_CONFIG_PATH,
    MAX_NODES,
    OWNER_FILE_NAME,
    SCRAM_MECHANISM,
    TLS_DIR_NAME,
    BrokerError,
    ClusterLayout,
    NodeStatus,
    Progress,
    bootstrap_for,
    client_port,
    controller_port,
    internal_port,
    new_cluster_id,
    print_progress,
    read_layout,
    render_properties,
    secure_server_properties,
    server_properties,
)
from localbroker.nodes import (
    _process_alive,
    _process_runs_config,
    live_broker_ids,
    owner_alive,
    owner_record,
    port_accepts_connections,
    port_is_free,
)
from localbroker.processes import dies_with_parent
from localbroker.toolchain import _tail, check_java, fetch_jars

logger = logging.getLogger(__name__)


class LocalCluster:
    """A local Apache Kafka KRaft cluster whose nodes are JVMs running from the cached Maven jars.

    Node i (1-based) listens for clients on base_port + 10*(i-1) and for the controller quorum on
    the port after that, on 127.0.0.1. Everything for node i lives under data_dir/node-i.
    """

    def __init__(
        self,
        data_dir: Path,
        nodes: int = 1,
        base_port: int = 9092,
        cache_dir: Path = DEFAULT_CACHE_DIR,
        heap: str = "512m",
        progress: Progress = print_progress,
        secure: bool = False,
    ) -> None:
        if not 1 <= nodes <= MAX_NODES:
            raise BrokerError(f"a local cluster has 1 to {MAX_NODES} nodes, not {nodes}")
        highest_port = controller_port(base_port, nodes)
        if base_port < 1024 or highest_port > 65535:
            raise BrokerError(
                f"ports {base_port}..{highest_port} are out of range; choose --port between 1024 and "
                f"{65535 - 10 * (nodes - 1) - 1}"
            )
        if not re.fullmatch(r"\d+[kKmMgG]?", heap):
            raise BrokerError(f"heap size {heap!r} is not a Java size such as 512m or 1g")
        self.data_dir = Path(data_dir).absolute()
        self.nodes = nodes
        self.base_port = base_port
        self.cache_dir = Path(cache_dir).expanduser()
        self.heap = heap
        self.progress = progress
        self.secure = secure
        self._processes: dict[int, subprocess.Popen[bytes]] = {}

    @classmethod
    def for_data_dir(
        cls,
        data_dir: Path,
        *,
        nodes: int | None = None,
        base_port: int | None = None,
        default_base_port: int = 9092,
        cache_dir: Path = DEFAULT_CACHE_DIR,
        heap: str = "512m",
        progress: Progress = print_progress,
        secure: bool | None = None,
    ) -> LocalCluster:
        """The cluster in data_dir with its recorded shape, unless nodes or base_port say otherwise."""
        layout = read_layout(Path(data_dir))
        return cls(
            data_dir,
            nodes=nodes if nodes is not None else (layout.nodes if layout else 1),
            base_port=(
                base_port if base_port is not None else (layout.base_port if layout else default_base_port)
            ),
            cache_dir=cache_dir,
            heap=heap,
            progress=progress,
            secure=secure if secure is not None else (layout.secure if layout else False),
        )

    # ----- paths and shape

    @property
    def bootstrap_servers(self) -> str:
        return bootstrap_for(self.base_port, self.nodes)

    @property
    def probe_bootstrap_servers(self) -> str:
        """Where the launcher itself checks readiness: a secure cluster's PLAINTEXT peer listeners."""
        return bootstrap_for(self.base_port, self.nodes, internal_port if self.secure else client_port)

    @property
    def admin_env_path(self) -> Path:
        return self.data_dir / ADMIN_ENV_FILE_NAME

    @property
    def tls_files(self) -> TlsFiles:
        return ensure_tls_files(self.data_dir / TLS_DIR_NAME)

    @property
    def layout_path(self) -> Path:
        return self.data_dir / LAYOUT_FILE_NAME

    def node_dir(self, node_id: int) -> Path:
        return self.data_dir / f"node-{node_id}"

    def config_path(self, node_id: int) -> Path:
        return self.node_dir(node_id) / "server.properties"

    def log_dir(self, node_id: int) -> Path:
        return self.node_dir(node_id) / "logs"

    def server_log_path(self, node_id: int) -> Path:
        return self.log_dir(node_id) / "server.log"

    def pid_path(self, node_id: int) -> Path:
        return self.node_dir(node_id) / "kafka.pid"

    def owner_path(self, node_id: int) -> Path:
        return self.node_dir(node_id) / OWNER_FILE_NAME

    def meta_properties_path(self, node_id: int) -> Path:
        return self.node_dir(node_id) / "data" / "meta.properties"

    def node_properties(self, node_id: int) -> dict[str, str]:
        if self.secure:
            return secure_server_properties(
                node_id=node_id,
                nodes=self.nodes,
                base_port=self.base_port,
                node_dir=self.node_dir(node_id),
                keystore=self.tls_files.broker_keystore,
            )
        return server_properties(
            node_id=node_id, nodes=self.nodes, base_port=self.base_port, node_dir=self.node_dir(node_id)
        )

    def _recorded_or_own_layout(self) -> tuple[int, int]:
        layout = read_layout(self.data_dir)
        return (layout.nodes, layout.base_port) if layout else (self.nodes, self.base_port)

    def _check_node_id(self, node_id: int) -> None:
        if not 1 <= node_id <= self.nodes:
            raise BrokerError(f"node {node_id} does not exist; this cluster has nodes 1..{self.nodes}")

    # ----- process bookkeeping

    def running_pid(self, node_id: int) -> int | None:
        """The pid of this node's broker JVM if it is running, judged by its pid file and /proc."""
        process = self._processes.get(node_id)
        if process is not None:
            if process.poll() is None:
                # Our own child: alive, even in the instant between fork and exec when /proc still shows
                # this Python process's command line rather than the JVM's.
                return process.pid
            del self._processes[node_id]
        try:
            pid = int(self.pid_path(node_id).read_text(encoding="utf-8").strip())
        except (OSError, ValueError):
            return None
        if _process_alive(pid) and _process_runs_config(pid, self.config_path(node_id)):
            return pid
        return None

    def status(self) -> list[NodeStatus]:
        nodes, base_port = self._recorded_or_own_layout()
        statuses = []
        for node_id in range(1, nodes + 1):
            pid = self.running_pid(node_id)
            port = client_port(base_port, node_id)
            statuses.append(
                NodeStatus(
                    node_id=node_id,
                    client_port=port,
                    controller_port=controller_port(base_port, node_id),
                    pid=pid,
                    running=pid is not None,
                    accepting_connections=pid is not None and port_accepts_connections(port),
                    log_path=self.server_log_path(node_id),
                )
            )
        return statuses

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Serialises start and stop on one data dir across processes."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with (self.data_dir / ".lock").open("a") as lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock_file, fcntl.LOCK_UN)

    # ----- start

    def start(self, timeout: float = 90.0, *, die_with_this_process: bool = False) -> str:
        """Starts every node that is not running and waits until all serve clients; returns the bootstrap.

        With `die_with_this_process` the nodes started get SIGTERM when this process ends, however it ends
        (Linux only; start them from the main thread, since the signal comes when the forking thread ends),
        and a later start stops any that outlived it. Otherwise they run until stopped."""
        with self._locked():
            self._stop_orphans()
            java = check_java()
            layout = self._settle_layout()
            if layout is None:
                bootstrap = self.bootstrap_servers
                self.progress(f"Kafka is already running at {bootstrap} (data dir {self.data_dir}).")
                self._wait_until_ready(set(), time.monotonic() + timeout)
                return bootstrap
            to_start = [i for i in range(1, self.nodes + 1) if self.running_pid(i) is None]
            self._check_ports_free(to_start)
            self._check_cluster_id(layout.cluster_id)
            self._write_layout(layout)
            libs = fetch_jars(self.cache_dir, progress=self.progress)
            for node_id in range(1, self.nodes + 1):
                self._write_config(node_id)
            admin_password = self._admin_password() if self.secure else None
            self._format_unformatted(java, libs, layout.cluster_id, to_start, admin_password)
            deadline = time.monotonic() + timeout
            for node_id in to_start:
                self._launch(java, libs, node_id, die_with_this_process=die_with_this_process)
            try:
                self._wait_until_ready(set(to_start), deadline)
            except BrokerError:
                self._terminate(to_start, timeout=30.0)
                raise
            return self.bootstrap_servers

    def _settle_layout(self) -> ClusterLayout | None:
        """The layout to start with, or None when every recorded node is already running."""
        recorded = read_layout(self.data_dir)
        if recorded is None:
            return ClusterLayout(
                cluster_id=new_cluster_id(), nodes=self.nodes, base_port=self.base_port, secure=self.secure
            )
        if recorded.secure != self.secure:
            kind, flag = ("secure", "with --secure") if recorded.secure else ("plaintext", "without --secure")
            raise BrokerError(
                f"{self.data_dir} holds a {kind} cluster; start it {flag}, or use another --data-dir, "
                f"or delete {self.data_dir} to start afresh"
            )
        if recorded.nodes != self.nodes:
            raise BrokerError(
                f"{self.data_dir} holds a {recorded.nodes}-node cluster, not a {self.nodes}-node one; "
                f"start it with --nodes {recorded.nodes}, or use another --data-dir, "
                f"or delete {self.data_dir} to start afresh"
            )
        running = [i for i in range(1, recorded.nodes + 1) if self.running_pid(i) is not None]
        if running:
            # Live nodes keep the ports they were started with, whatever was asked for now.
            if recorded.base_port != self.base_port:
                self.progress(
                    f"Ignoring port {self.base_port}: the cluster in {self.data_dir} is running on "
                    f"port {recorded.base_port}."
                )
            self.base_port = recorded.base_port
            if len(running) == recorded.nodes:
                return None
        return ClusterLayout(
            cluster_id=recorded.cluster_id, nodes=self.nodes, base_port=self.base_port, secure=self.secure
        )

    def _check_ports_free(self, node_ids: list[int]) -> None:
        for node_id in node_ids:
            for role, port in (
                ("client", client_port(self.base_port, node_id)),
                ("controller", controller_port(self.base_port, node_id)),
                *((("internal", internal_port(self.base_port, node_id)),) if self.secure else ()),
            ):
                if not port_is_free(port):
                    raise BrokerError(
                        f"port {port} ({role} port of node {node_id}) on {LOCALHOST} is already in use by "
                        f"another program; choose free ports with --port N (node i listens on "
                        f"N+10*(i-1) and the port after it), or stop the program using port {port}"
                    )

    def _check_cluster_id(self, cluster_id: str) -> None:
        for node_id in range(1, self.nodes + 1):
            formatted_for = self._formatted_cluster_id(node_id)
            if formatted_for is not None and formatted_for != cluster_id:
                raise BrokerError(
                    f"{self.node_dir(node_id)} was formatted for Kafka cluster {formatted_for}, but "
                    f"{self.layout_path} names cluster {cluster_id}; use another --data-dir, "
                    f"or delete {self.data_dir} to start afresh (its topics are lost)"
                )

    def _formatted_cluster_id(self, node_id: int) -> str | None:
        path = self.meta_properties_path(node_id)
        if not path.exists():
            return None
        for line in path.read_text(encoding="utf-8").splitlines():
            key, _, value = line.partition("=")
            if key.strip() == "cluster.id":
                return value.strip()
        raise BrokerError(f"{path} has no cluster.id; delete {self.data_dir} to start afresh")

    def _write_layout(self, layout: ClusterLayout) -> None:
        staging = self.layout_path.with_suffix(".tmp")
        staging.write_text(layout.to_json() + "\n", encoding="utf-8")
        staging.replace(self.layout_path)

    def _write_config(self, node_id: int) -> None:
        self.log_dir(node_id).mkdir(parents=True, exist_ok=True)
        (self.node_dir(node_id) / "data").mkdir(parents=True, exist_ok=True)
        self.config_path(node_id).write_text(
            render_properties(self.node_properties(node_id)), encoding="utf-8"
        )

    def _java_command(self, java: str, libs: Path, node_id: int, main_class: str) -> list[str]:
        return [
            java,
            f"-Xmx{self.heap}",
            "-Xms128m",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={LOG4J_CONFIG_PATH}",
            f"-Dkafka.logs.dir={self.log_dir(node_id)}",
            "-cp",
            str(libs / "*"),
            main_class,
        ]

    def _admin_password(self) -> str:
        """The super user's password: the one in admin.env, or a new one for a cluster not yet formatted."""
        formatted = any(self._formatted_cluster_id(i) is not None for i in range(1, self.nodes + 1))
        password = read_admin_password(self.admin_env_path)
        if password is None and formatted:
            raise BrokerError(
                f"{self.admin_env_path} is missing, and it holds the only copy of the super user's password; "
                f"delete {self.data_dir} to start afresh (its topics are lost)"
            )
        password = password or secrets.token_urlsafe(32)
        write_admin_env(
            self.admin_env_path,
            bootstrap_servers=self.bootstrap_servers,
            user=ADMIN_USER,
            password=password,
            ca_file=self.tls_files.ca_file,
        )
        return password

    def _format_unformatted(
        self, java: str, libs: Path, cluster_id: str, node_ids: list[int], admin_password: str | None = None
    ) -> None:
        pending = [i for i in node_ids if self._formatted_cluster_id(i) is None]
        if not pending:
            return
        node_list = ", ".join(map(str, pending))
        self.progress(f"Formatting storage of node(s) {node_list} for cluster {cluster_id}...")
        # Static quorum (controller.quorum.voters): format takes neither --standalone nor
        # --initial-controllers, and every node gets the same cluster id.
        formatters: dict[int, subprocess.Popen[str]] = {}
        for node_id in pending:
            command = [
                *self._java_command(java, libs, node_id, "kafka.tools.StorageTool"),
                "format", "--cluster-id", cluster_id, "--config", str(self.config_path(node_id)),
                "--ignore-formatted",
            ]
            if admin_password is not None:
                # The password reaches the formatter as an argument: a short-lived process of this user's.
                command += ["--add-scram", f"{SCRAM_MECHANISM}=[name={ADMIN_USER},password={admin_password}]"]
            formatters[node_id] = subprocess.Popen(  # noqa: S603 - java and arguments built here
                command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                cwd=self.node_dir(node_id), stdin=subprocess.DEVNULL,
            )
        failures = []
        for node_id, formatter in formatters.items():
            try:
                output, _ = formatter.communicate(timeout=120)
            except subprocess.TimeoutExpired:
                formatter.kill()
                output, _ = formatter.communicate()
            if formatter.returncode != 0:
                failures.append(f"node {node_id}:\n{_tail(output or '')}")
        if failures:
            raise BrokerError("formatting Kafka storage failed:\n" + "\n".join(failures))

    def _launch(self, java: str, libs: Path, node_id: int, *, die_with_this_process: bool = False) -> None:
        command = [*self._java_command(java, libs, node_id, "kafka.Kafka"), str(self.config_path(node_id))]
        console_log = self.log_dir(node_id) / "console.log"
        if die_with_this_process:
            self.owner_path(node_id).write_text(owner_record(os.getpid()) + "\n", encoding="utf-8")
        else:
            self.owner_path(node_id).unlink(missing_ok=True)
        with console_log.open("ab") as console:
            process = subprocess.Popen(  # noqa: S603 - java and arguments built here
                command, stdout=console, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                cwd=self.node_dir(node_id), start_new_session=True,
                # SIGTERM, not SIGKILL: the node's controlled shutdown leaves its logs clean for the next start.
                preexec_fn=dies_with_parent(signal.SIGTERM) if die_with_this_process else None,
            )
        self._processes[node_id] = process
        self.pid_path(node_id).write_text(f"{process.pid}\n", encoding="utf-8")
        self.progress(
            f"Started Kafka node {node_id} (pid {process.pid}) on {LOCALHOST}:"
            f"{client_port(self.base_port, node_id)}; log: {self.server_log_path(node_id)}"
        )

    def _wait_until_ready(self, launched: set[int], deadline: float) -> None:
        """Waits until the cluster reports every node as a live broker, failing fast if a node dies."""
        wanted = set(range(1, self.nodes + 1))
        started = time.monotonic()
        announced = False
        while True:
            for node_id in sorted(launched):
                if self.running_pid(node_id) is None:
                    raise BrokerError(
                        f"Kafka node {node_id} exited during start-up.\n{self._log_excerpt(node_id)}"
                    )
            live: set[int] = set()
            probe_port = internal_port if self.secure else client_port
            if any(port_accepts_connections(probe_port(self.base_port, i)) for i in wanted):
                remaining = deadline - time.monotonic()
                live = live_broker_ids(self.probe_bootstrap_servers, timeout=max(1.0, min(5.0, remaining)))
                if wanted <= live:
                    if launched or announced:
                        elapsed = time.monotonic() - started
                        self.progress(f"Kafka is ready at {self.bootstrap_servers} after {elapsed:.0f} s.")
                    return
            if time.monotonic() >= deadline:
                lagging = sorted(wanted - live)
                raise BrokerError(
                    f"Kafka did not serve clients within the start timeout (node(s) "
                    f"{', '.join(map(str, lagging))} not ready).\n{self._log_excerpt(lagging[0])}"
                )
            if not announced:
                self.progress(f"Waiting for {len(wanted)} Kafka node(s) to serve clients...")
                announced = True
            time.sleep(0.5)

    def _log_excerpt(self, node_id: int, lines: int = 25) -> str:
        for path in (self.server_log_path(node_id), self.log_dir(node_id) / "console.log"):
            if path.exists() and path.stat().st_size > 0:
                text = path.read_text(encoding="utf-8", errors="replace")
                return f"Last lines of {path}:\n{_tail(text, lines)}\n(full log: {path})"
        return f"Node {node_id} wrote no log; look in {self.log_dir(node_id)}"

    # ----- stop

    def stop_orphans(self) -> list[int]:
        """Stops the running nodes whose owner (see `start`) has ended; returns their ids."""
        with self._locked():
            return self._stop_orphans()

    def _stop_orphans(self) -> list[int]:
        nodes, _ = self._recorded_or_own_layout()
        orphans: list[int] = []
        for node_id in range(1, nodes + 1):
            try:
                record = self.owner_path(node_id).read_text(encoding="utf-8")
            except OSError:
                continue
            pid = self.running_pid(node_id)
            if pid is None:
                self.owner_path(node_id).unlink(missing_ok=True)
            elif not owner_alive(record):
                self.progress(
                    f"Stopping Kafka node {node_id} (pid {pid}): the process that started it for itself "
                    f"(pid {record.split()[0]}) has ended."
                )
                orphans.append(node_id)
        if orphans:
            self._terminate(orphans, timeout=30.0)
        return orphans

    def stop(self, timeout: float = 60.0) -> None:
        """Stops every node with SIGTERM (a controlled shutdown) and waits; SIGKILL only after timeout."""
        with self._locked():
            nodes, base_port = self._recorded_or_own_layout()
            self.nodes, self.base_port = nodes, base_port
            running = [i for i in range(1, nodes + 1) if self.running_pid(i) is not None]
            if not running:
                self.progress(f"No Kafka node is running in {self.data_dir}.")
                return
            self.progress(f"Stopping Kafka node(s) {', '.join(map(str, running))}...")
            self._terminate(running, timeout)
            self.progress("Kafka stopped.")

    def stop_node(self, node_id: int, timeout: float = 60.0) -> None:
        """Stops one node (controlled shutdown), leaving the others running; for failover tests."""
        self._check_node_id(node_id)
        with self._locked():
            if self.running_pid(node_id) is None:
                self.progress(f"Kafka node {node_id} is not running.")
                return
            self.progress(f"Stopping Kafka node {node_id}...")
            self._terminate([node_id], timeout)

    def start_node(self, node_id: int, timeout: float = 90.0) -> None:
        """Starts one stopped node of an already formatted cluster and waits until it serves clients."""
        self._check_node_id(node_id)
        with self._locked():
            if self.running_pid(node_id) is not None:
                self.progress(f"Kafka node {node_id} is already running.")
                return
            layout = read_layout(self.data_dir)
            if layout is None or self._formatted_cluster_id(node_id) is None:
                raise BrokerError(f"node {node_id} in {self.data_dir} was never started; run start() first")
            java = check_java()
            self._check_ports_free([node_id])
            libs = fetch_jars(self.cache_dir, progress=self.progress)
            self._write_config(node_id)
            deadline = time.monotonic() + timeout
            self._launch(java, libs, node_id)
            try:
                self._wait_until_ready({node_id}, deadline)
            except BrokerError:
                self._terminate([node_id], timeout=30.0)
                raise

    def _terminate(self, node_ids: list[int], timeout: float) -> None:
        # All nodes get SIGTERM together: each broker's controlled shutdown runs while every
        # controller is still up, so no node waits on a quorum that has already gone.
        pids = {i: pid for i in node_ids if (pid := self.running_pid(i)) is not None}
        for pid in pids.values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        remaining = dict(pids)
        while remaining and time.monotonic() < deadline:
            self._reap_children()
            remaining = {i: pid for i, pid in remaining.items() if _process_alive(pid)}
            if remaining:
                time.sleep(0.2)
        for node_id, pid in remaining.items():
            message = (
                f"Kafka node {node_id} (pid {pid}) did not shut down within {timeout:.0f} s; killing it. "
                f"Its next start will recover its logs, which can take longer."
            )
            logger.warning(message)
            self.progress(f"WARNING: {message}")
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        kill_deadline = time.monotonic() + 10
        while remaining and time.monotonic() < kill_deadline:
            self._reap_children()
            remaining = {i: pid for i, pid in remaining.items() if _process_alive(pid)}
            if remaining:
                time.sleep(0.1)
        for node_id in node_ids:
            self.pid_path(node_id).unlink(missing_ok=True)
            self.owner_path(node_id).unlink(missing_ok=True)
            process = self._processes.pop(node_id, None)
            if process is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=1)

    def _reap_children(self) -> None:
        for process in self._processes.values():
            process.poll()
