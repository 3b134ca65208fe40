"""The apply loop: micro-batches from Kafka into the vector index, offsets committed last."""
