"""Online features computed from events: pure code, no Kafka, no Redis."""
