"""Avro schemas of every record and the codecs that map them to domain objects."""
