"""The German relevance benchmark's core: a deterministic judged corpus, 490 graded queries in
eight classes, the judging rule and the ranking metrics; installed, because the model-switch
gate (``handwerk.generations.quality``) scores models with it inside the service.

- ``demo``: the deterministic German/English craftsman projects (``tooling.demo`` re-exports it
  for ``handwerk demo-data``, the bench and tests); ``corpus``: those projects with their facts;
- ``vocabulary``, ``features``: language-free concepts ("Eiche" is "oak");
- ``queries``, ``crosslingual``, ``estimator``, ``typos``: the query classes; ``queryset`` puts
  them together; ``judge``: how relevant a project is to a query, from structure alone;
- ``metrics``: nDCG@10, recall@10, MRR, per class and overall;
- ``offline``: a model's score without a service (exact cosine top 10 in numpy).

Measuring a running service over HTTP (``handwerk eval``) lives in ``tooling/relevance/``.
"""
