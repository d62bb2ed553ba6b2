"""Java and Maven: checking the JDK and fetching the Kafka jars the local broker runs from."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import time
import uuid
from pathlib import Path

from localbroker.config import (
    DEFAULT_CACHE_DIR,
    DEPENDENCY_PLUGIN,
    JAVA_PACKAGE_HINT,
    MAVEN_PACKAGE_HINT,
    MINIMUM_JAVA_VERSION,
    POM_PATH,
    BrokerError,
    Progress,
    print_progress,
)


def find_java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        candidate = Path(java_home) / "bin" / "java"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which("java")
    if found is None:
        raise BrokerError(f"`java` was not found on PATH; Kafka needs it: {JAVA_PACKAGE_HINT}")
    return found


def java_major_version(java: str) -> int:
    try:
        result = subprocess.run(  # noqa: S603 - the java binary found on PATH, fixed arguments
            [java, "-version"], capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise BrokerError(f"could not run `{java} -version` ({error}); {JAVA_PACKAGE_HINT}") from error
    match = re.search(r'version "(\d+)(?:\.(\d+))?', result.stderr + result.stdout)
    if match is None:
        raise BrokerError(f"could not read the Java version from `{java} -version`; {JAVA_PACKAGE_HINT}")
    major = int(match.group(1))
    # Java 8 and older report themselves as "1.8.0_x".
    if major == 1 and match.group(2):
        major = int(match.group(2))
    return major


def check_java() -> str:
    """The java binary to use; raises BrokerError when it is missing or older than Kafka 4 needs."""
    java = find_java()
    major = java_major_version(java)
    if major < MINIMUM_JAVA_VERSION:
        raise BrokerError(
            f"{java} is Java {major}, but Kafka 4 brokers need Java {MINIMUM_JAVA_VERSION} or newer; "
            f"{JAVA_PACKAGE_HINT} (and put it first on PATH or set JAVA_HOME)"
        )
    return java


def kafka_version_of_pom(pom_text: str) -> str:
    match = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", pom_text)
    return match.group(1).strip() if match else "unknown"


def jar_dir_for(cache_dir: Path, pom_path: Path = POM_PATH) -> Path:
    """Where the jars for this exact pom live; a changed pom gets a new folder, so bumps refetch."""
    pom_bytes = pom_path.read_bytes()
    digest = hashlib.sha256(pom_bytes).hexdigest()[:16]
    version = kafka_version_of_pom(pom_bytes.decode("utf-8"))
    return cache_dir / f"kafka-{version}-{digest}" / "libs"


def _tail(text: str, lines: int = 30) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def fetch_jars(
    cache_dir: Path = DEFAULT_CACHE_DIR, *, pom_path: Path = POM_PATH, progress: Progress = print_progress
) -> Path:
    """The folder holding the broker's jars, running Maven only when this pom's jars are not cached yet."""
    libs = jar_dir_for(cache_dir, pom_path)
    complete_marker = libs.parent / "complete"
    if complete_marker.exists() and any(libs.glob("kafka_*.jar")):
        return libs
    mvn = shutil.which("mvn")
    if mvn is None:
        raise BrokerError(
            f"`mvn` was not found on PATH; it is needed once to fetch the Kafka jars into {cache_dir}: "
            f"{MAVEN_PACKAGE_HINT}"
        )
    version = kafka_version_of_pom(pom_path.read_text(encoding="utf-8"))
    progress(
        f"Fetching Apache Kafka {version} jars from Maven Central into {libs.parent} (first start only)..."
    )
    cache_dir.mkdir(parents=True, exist_ok=True)
    # A private staging folder, renamed into place when complete, so two concurrent first starts
    # cannot see each other's half-copied jars.
    staging = cache_dir / f".staging-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        shutil.copyfile(pom_path, staging / "pom.xml")
        command = [
            mvn, "-B", "-q", "-f", str(staging / "pom.xml"), DEPENDENCY_PLUGIN,
            "-DincludeScope=runtime", f"-DoutputDirectory={staging / 'libs'}",
        ]
        started = time.monotonic()
        try:
            result = subprocess.run(  # noqa: S603 - mvn found on PATH, arguments built here
                command, capture_output=True, text=True, cwd=staging, timeout=900, check=False
            )
        except subprocess.TimeoutExpired as error:
            raise BrokerError(
                "Maven took over 15 minutes to fetch the Kafka jars; check access to Maven Central "
                "(https://repo.maven.apache.org) or proxy settings in ~/.m2/settings.xml"
            ) from error
        if result.returncode != 0 or not any((staging / "libs").glob("kafka_*.jar")):
            raise BrokerError(
                "Maven could not fetch the Kafka jars; check access to Maven Central "
                "(https://repo.maven.apache.org) or proxy settings in ~/.m2/settings.xml. Maven said:\n"
                + _tail(result.stdout + "\n" + result.stderr)
            )
        (staging / "complete").write_text(f"{version}\n", encoding="utf-8")
        libs.parent.parent.mkdir(parents=True, exist_ok=True)
        try:
            staging.rename(libs.parent)
        except OSError:
            # Another process finished first; its copy is just as good.
            if not (libs.parent / "complete").exists():
                raise
        jar_count = len(list(libs.glob("*.jar")))
        progress(f"Fetched {jar_count} jars in {time.monotonic() - started:.0f} s.")
        return libs
    finally:
        shutil.rmtree(staging, ignore_errors=True)
