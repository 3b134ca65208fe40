"""Index generations in practice: reindex, backfill, model switch, compaction and rollback, run
by the serving process. ``manager.ReindexManager`` is the entry point and wires the rest: the
job record and its states (``jobs.py``), input preparation (``prepare.py``) and the export of
the live generation (``export.py``), the builder child process (``child.py``) and what it runs
(``builder.py``), the topic replay (``replay.py``), the handover with its quality gate
(``handover.py``, ``quality.py``) and upkeep: compaction checks and clean-up (``upkeep.py``).
Only the process wiring (``handwerk.process.runtime``), the admin API, the CLI and tests import
it; it imports the layers below it (settings, embedding, index, kafka, outbox, the consumer's
applier, the lag monitor, process utilities), none of which imports it. ``jobs.py`` uses the
standard library only, so the CLI takes its vocabulary (sources, job states) without loading
the index or a model."""
