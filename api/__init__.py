"""HTTP: project writes through the outbox, similarity search, stats, health and metrics."""
