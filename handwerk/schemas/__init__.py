"""Public JSON Schemas (the event contract upstream systems write against)."""
