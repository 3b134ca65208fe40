"""Index generations in practice: reindex, backfill, model switch, compaction, rollback."""
