"""Rollwatch's one typed settings object and what is built from it (Kafka client options, rule configuration)."""
