"""Child processes of a benchmark run (workers, the bare agent): start, watch, measure memory, stop."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from config.settings import Settings
from localbroker.processes import dies_with_parent

ROOT = Path(__file__).resolve().parents[1]

def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def peak_rss_bytes(pid: int) -> int | None:
    """The process's peak resident set (VmHWM) so far, or None once it has gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return None


def cpu_seconds(pid: int) -> float | None:
    """User plus system CPU time the process has used so far, or None once it has gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Fields after the parenthesised command name; utime and stime are the 14th and 15th of the whole line.
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def running(pid: int) -> bool:
    """Whether the process exists and has not exited (a zombie, exited but not yet reaped, has)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] not in "ZX"


def machine_busy_seconds() -> float:
    """CPU seconds all cores of the machine have spent busy since boot (everyone's work, not just the bench's)."""
    # The first line of /proc/stat: user nice system idle iowait irq softirq steal ..., in clock ticks.
    ticks = [int(value) for value in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    busy = ticks[0] + ticks[1] + ticks[2] + ticks[5] + ticks[6] + ticks[7]
    return busy / os.sysconf("SC_CLK_TCK")


#: The peer's virtualenv: quixstreams pins pydantic below the application's pins, so it has one of its own.
PEER_VENV = ROOT / ".venv-peer"
PEER_PIP = "pip==26.3"


def peer_python(explicit: str | None, progress: Callable[[str], None]) -> str:
    """The interpreter for `python -m bench.peer`: `explicit` if given, else that of .venv-peer, made on first
    use from the `bench` dependency group of pyproject.toml (as `make` makes .venv)."""
    if explicit:
        if subprocess.run([explicit, "-c", "import quixstreams, fastavro"], check=False,
                          capture_output=True).returncode != 0:
            raise SystemExit(f"bench.pipeline: {explicit} cannot import quixstreams and fastavro")
        return explicit
    python = PEER_VENV / "bin" / "python"
    stamp = PEER_VENV / ".installed"
    pyproject = ROOT / "pyproject.toml"
    if not stamp.exists() or stamp.stat().st_mtime < pyproject.stat().st_mtime:
        progress(f"peer: installing the `bench` dependency group into {PEER_VENV}...")
        for command in (
            [sys.executable, "-m", "venv", str(PEER_VENV)],
            [str(python), "-m", "pip", "install", "--quiet", "--upgrade", PEER_PIP],
            [str(python), "-m", "pip", "install", "--quiet", "--group", f"{pyproject}:bench"],
        ):
            subprocess.run(command, check=True, cwd=ROOT)
        stamp.touch()
    return str(python)


class ChildProcess:
    """One Python module run as a child with ROLLWATCH_* settings, its output in a log file, in a session of
    its own so that Ctrl-C reaches the bench alone and the bench stops it in order."""

    def __init__(
        self,
        name: str,
        module: str,
        settings: Settings,
        log_path: Path,
        extra_env: dict[str, str],
        *,
        keep_stdout: bool = True,
        python: str = sys.executable,
    ) -> None:
        self.name = name
        #: The interpreter that runs the module: the bench's own, but the peer's virtualenv for `bench.peer`.
        self.python = python
        self.module = module
        self.settings = settings
        self.log_path = log_path
        self.extra_env = extra_env
        self.keep_stdout = keep_stdout
        self.process: subprocess.Popen[bytes] | None = None
        self.peak_rss: int | None = None

    @property
    def pid(self) -> int:
        if self.process is None:
            raise RuntimeError(f"{self.name} has not been started")
        return self.process.pid

    def start(self, *arguments: str) -> ChildProcess:
        inherited = {key: value for key, value in os.environ.items() if not key.startswith("ROLLWATCH_")}
        env = {**inherited, **self.settings.as_environment(), **self.extra_env}
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [self.python, "-m", self.module, *arguments],
                cwd=ROOT,
                env=env,
                stdout=log if self.keep_stdout else subprocess.DEVNULL,
                stderr=log,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=dies_with_parent(signal.SIGTERM),  # a bench killed outright takes its workers along
            )
        return self

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def wait(self, timeout: float) -> int:
        if self.process is None:
            raise RuntimeError(f"{self.name} has not been started")
        return self.process.wait(timeout=timeout)

    def check_alive(self) -> None:
        if not self.alive():
            raise RuntimeError(f"{self.name} exited early; the end of {self.log_path}:\n{self.log_tail()}")

    def log_tail(self, characters: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-characters:]
        except OSError:
            return "(no log)"

    def sample_peak_rss(self) -> int | None:
        """Reads VmHWM while the process lives; keeps the last reading for after it has stopped."""
        if self.alive():
            reading = peak_rss_bytes(self.pid)
            if reading is not None:
                self.peak_rss = reading
        return self.peak_rss

    def cpu_seconds(self) -> float | None:
        return cpu_seconds(self.pid) if self.alive() else None

    def stop(self, timeout: float = 60.0) -> None:
        """SIGTERM to the child's own process group, then SIGKILL if it has not finished within `timeout`."""
        if self.process is None or self.process.poll() is not None:
            return
        self.sample_peak_rss()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)


class ProcessGroup:
    """Every child a run started, so that one `stop_all` in a finally block leaves none behind."""

    def __init__(self) -> None:
        self.children: list[ChildProcess] = []

    def start(self, child: ChildProcess, *arguments: str) -> ChildProcess:
        self.children.append(child)
        return child.start(*arguments)

    def stop(self, children: list[ChildProcess]) -> None:
        # SIGTERM to all first, so several workers leave the group together instead of rebalancing in turn.
        for child in children:
            if child.alive():
                child.sample_peak_rss()
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.pid, signal.SIGTERM)
        deadline = time.monotonic() + 60
        for child in children:
            child.stop(timeout=max(deadline - time.monotonic(), 1.0))

    def stop_all(self) -> None:
        self.stop([child for child in self.children if child.alive()])
