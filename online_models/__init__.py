"""Models that learn from each event and score titles: pure code, no Kafka, no Redis."""
