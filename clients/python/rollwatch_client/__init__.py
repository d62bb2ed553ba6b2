"""The MIS client: validated, idempotent publishing of Rollwatch input records to Kafka."""
