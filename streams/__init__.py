"""reelstream's adapter layer: Kafka, Redis, HTTP and the command line."""
