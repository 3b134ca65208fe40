"""Sentence embeddings (all-MiniLM-L6-v2 by default), loaded offline once per process and run
off the event loop. One job per module; import a name from the module that defines it:

- ``specs``: model spec strings and ``ModelSpec`` (``resolve_model``, ``model_key``,
  ``bundled_model_path``), what a model folder declares, and the types ``Purpose``,
  ``Backend``, ``QueryQuantization``.
- ``errors``: ``EmbedderUnavailable`` (transient encoder failure).
- ``embedder``: the ``Embedder`` facade; ``loading``: ``load_embedder`` (one from settings).
- ``onnx_encoder``, ``torch_encoder``, ``e5_onnx``, ``e5_encoder``: one backend each, used by
  the facade; ``onnx_export``: the ONNX export and its int8 copy (onnx and e5-onnx backends).
- ``query_batching``: query micro-batching and the query cache; ``vector_cache``: computed
  vectors shared by importer and consumer, bounded by size and pruned of unused models.

Who may import it: the stages (consumer, api), generations, index, operations, process, the
CLI, scripts, tooling and tests. It imports none of them: only ``handwerk.settings`` (in
``loading``), ``handwerk.files`` and ``handwerk.contract``. What text is embedded, and its hash,
belong to the event contract (``handwerk.contract.text``), not here.
"""
