"""A process's life: ``runtime`` is the composition root that wires the stages' parts and owns
every client; ``supervision`` keeps background roles running. The rest are leaves anything may
use: the data-folder lock, logging, memory trimming, stop-aware waiting and backoff, test crash
points, child-process hygiene and storage exhaustion (``storage``: recognised by code, logged
once per episode). Leaves import only ``process`` and ``settings``.
"""
