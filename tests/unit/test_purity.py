"""processors/ stays pure: no Kafka, Faust, SQL, HTTP, Avro or metrics library is imported there."""

from __future__ import annotations

import ast
from pathlib import Path

FORBIDDEN = {
    "faust", "mode", "aiokafka", "kafka", "confluent_kafka", "sqlalchemy", "alembic", "psycopg",
    "psycopg2", "sqlite3", "http", "urllib", "requests", "httpx", "aiohttp", "socket", "fastavro",
    "avro", "prometheus_client", "asyncio", "streams", "sinks", "schemas", "localbroker",
}
PROCESSORS = Path(__file__).resolve().parents[2] / "processors"


def imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def test_processors_import_no_io_library() -> None:
    files = sorted(PROCESSORS.rglob("*.py"))
    assert files, "processors/ has no modules"
    offenders = {
        str(path.relative_to(PROCESSORS)): sorted(imported_roots(path) & FORBIDDEN) for path in files
    }
    assert {name: bad for name, bad in offenders.items() if bad} == {}


def test_the_check_catches_a_forbidden_import(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("import os\nfrom aiokafka import AIOKafkaProducer\nimport prometheus_client.core\n")
    assert imported_roots(sample) & FORBIDDEN == {"aiokafka", "prometheus_client"}
