"""Benchmark and demo tooling, beside the package in a source checkout: ``tooling.benchmark``
(``handwerk bench``: the whole service measured over HTTP against its targets) and
``tooling.demo`` (the deterministic demo projects of ``handwerk demo-data``, the bench, scripts/
and tests). It is not installed and the production image does not ship it: the CLI finds it from
a checkout (``handwerk.cli.checkout.import_tooling``), and the runtime package never imports it."""
