"""handwerk: a similarity index of craftsman projects kept provably in sync with its database.

The stages are installed as subpackages of their own (``handwerk.outbox``, ``handwerk.producer``,
``handwerk.consumer``, ``handwerk.api``; folders at the repository root). What they share lives
here, one folder per concern: ``contract`` (the event and the embedded text), ``settings``,
``access`` (API keys, rate limits), ``embedding``, ``kafka``, ``index`` (the Protocol and both
adapters), ``generations`` (reindex, handover, compaction), ``operations`` (reconcile, DLQ, lag,
legacy import), ``process`` (the composition root and process plumbing) and ``cli``.
``tests/architecture/test_import_rules.py`` holds the rules of who may import whom.
"""

__version__ = "0.1.0"
