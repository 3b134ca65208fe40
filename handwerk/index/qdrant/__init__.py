"""The Qdrant server backend through qdrant-client (tests use its local mode with the same
code): a collection per generation, a Qdrant alias names the live one. ``adapter.py`` is the
``VectorIndex``, ``catalog.py`` the ``GenerationCatalog``, ``connection.py`` turns settings
into a ``QdrantConnection`` (URL or local path, API key, TLS verification), ``local.py`` holds
the one local-mode client per connection, and ``errors.py`` maps what the client and the
server raise. It builds on the shared layer (``handwerk.index.protocol``, ``catalog``,
``validation``) and ``handwerk.settings``; only ``handwerk.index.factory`` imports it, plus
tests that exercise this backend by name."""
