"""The relay: publishes outbox rows to Kafka in order, marks them only after the broker's ack."""
