"""`scripts/soak.py`: `handwerk serve` on embedded defaults under a steady open-loop load for
an hour (writes and searches through the REST API), with a compaction, a reindex from the topic
and one SIGKILL + restart of serve, sampled every 10 s; at the end the chaos checker judges
every acknowledged write and the series are reduced to slopes (per hour) and a verdict.

Modules: ``load`` (open-loop writers and searchers, the write history the checker reads),
``probes`` (what a sample reads: the serve's process tree from /proc, the data folder's sizes,
row counts, the stats endpoint), ``analysis`` (pure: least-squares slopes over segments
between the run's discontinuities, the verdict's rules), ``report`` (rich table, matplotlib
PNG, JSON) and ``run`` (the order of a run).
"""
