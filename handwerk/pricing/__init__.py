"""Price estimates from comparable past projects: pure arithmetic, no I/O, so the service
(``handwerk.api`` ``POST /api/v1/estimate``) and the evaluation (``handwerk eval``) use the
very same code.

- ``quantiles``: weighted quantiles and the finite-sample level correction of the interval;
- ``estimate``: the estimation methods (price per m² of the neighbours, similarity-weighted,
  optionally adjusted for complexity by a slope fitted on the neighbours themselves);
- ``baselines``: what an estimate must beat (median price per m² of the same type, and of the
  same type and wood).
"""
