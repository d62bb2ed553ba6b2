"""Integration-tier fixtures; the Kafka ones live in tests/fixtures_kafka.py, shared with the e2e tier."""

from tests.integration.postgres import postgres_server, postgres_url  # noqa: F401 - fixtures
