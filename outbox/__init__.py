"""Write side: project rows and their outbox events, committed in one transaction."""
