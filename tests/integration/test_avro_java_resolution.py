"""The Java reference implementation resolves new alerts with the previous Alert schemas, as the spec says."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from schemas.codec import HEADER_LENGTH, AvroCodec
from tests.unit.test_schema_evolution import named_alert, referral_alert

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SOURCE = Path(__file__).with_name("java") / "AlertResolution.java"
REPOSITORY = Path.home() / ".m2" / "repository"
#: Apache Avro 1.12.0 and what it needs at run time, from the local Maven repository.
JARS = (
    "org/apache/avro/avro/1.12.0/avro-1.12.0.jar",
    "com/fasterxml/jackson/core/jackson-databind/2.17.2/jackson-databind-2.17.2.jar",
    "com/fasterxml/jackson/core/jackson-core/2.17.2/jackson-core-2.17.2.jar",
    "com/fasterxml/jackson/core/jackson-annotations/2.17.2/jackson-annotations-2.17.2.jar",
    "org/slf4j/slf4j-api/2.0.13/slf4j-api-2.0.13.jar",
    "org/apache/commons/commons-compress/1.26.2/commons-compress-1.26.2.jar",
)


@pytest.fixture(scope="module")
def java(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """The command that runs AlertResolution, fetching Apache Avro 1.12.0 with Maven on a machine without it."""
    jars = [REPOSITORY / jar for jar in JARS]
    assert shutil.which("javac") is not None, "needs a JDK (.ci/run installs openjdk-17-jdk-headless)"
    if not all(jar.is_file() for jar in jars):
        mvn = shutil.which("mvn")
        assert mvn is not None, "needs Maven to fetch Apache Avro 1.12.0 (.ci/run installs it)"
        subprocess.run(
            [mvn, "-B", "-q", "org.apache.maven.plugins:maven-dependency-plugin:3.8.1:get",
             "-Dartifact=org.apache.avro:avro:1.12.0"],
            check=True, timeout=600,
        )
    missing = [str(jar) for jar in jars if not jar.is_file()]
    assert not missing, f"Maven fetched Apache Avro 1.12.0 but not {missing}"
    classes = tmp_path_factory.mktemp("java")
    classpath = ":".join(str(jar) for jar in jars)
    subprocess.run(["javac", "-cp", classpath, "-d", str(classes), str(SOURCE)], check=True, timeout=120)
    return ["java", "-cp", f"{classpath}:{classes}", "AlertResolution"]


@pytest.mark.parametrize("previous", ["Alert.1", "Alert.2"])
def test_java_reads_new_alerts_with_a_upn_and_refuses_referral_alerts_with_a_previous_schema(
    java: list[str], previous: str, tmp_path: Path
) -> None:
    cases = {
        "named": named_alert(),
        "no-upn": named_alert(upn=None, referral_id="00000000-0000-4000-b000-000000000001"),
        "referral-rule": referral_alert(),
    }
    results = {}
    for name, alert in cases.items():
        body = tmp_path / f"{name}.bin"
        body.write_bytes(AvroCodec().encode(alert)[HEADER_LENGTH:])
        done = subprocess.run(
            [*java, str(ROOT / "schemas" / "Alert.avsc"), str(ROOT / "schemas" / "history" / f"{previous}.avsc"),
             str(body)], capture_output=True, text=True, timeout=120, check=True,
        )
        results[name] = done.stdout.strip()

    assert results["named"] == f"read {cases['named'].upn} MISSING_NO_DESTINATION"
    assert results["no-upn"] == "refused AvroTypeException"
    assert results["referral-rule"].startswith("refused ")
