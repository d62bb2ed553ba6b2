"""Runs Apache Kafka (KRaft) from Maven Central jars on this machine, for development and tests."""
