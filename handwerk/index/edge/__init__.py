"""The Qdrant Edge backend: the Qdrant engine embedded in this process, one shard folder per
generation under ``<index_dir>/<alias>/``. ``adapter.py`` is the ``VectorIndex`` (writer
thread, crash recovery of payload indexes), ``catalog.py`` the ``GenerationCatalog`` (the
``CURRENT`` file names the live generation) and ``errors.py`` maps what the ``qdrant_edge``
binding raises. It builds on the shared layer (``handwerk.index.protocol``, ``catalog``,
``validation``) and nothing else of handwerk; only ``handwerk.index.factory`` imports it, plus
tests and measuring scripts that exercise this backend by name."""
