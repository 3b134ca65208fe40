"""The ``handwerk`` command: thin commands only (parse, call, print). ``main`` is the entry point
and reads settings once; ``keys``, ``generations`` and ``bench`` add their command groups;
``checkout`` finds ``tooling/`` for ``bench`` and ``demo-data``. Nothing imports this package.
"""
