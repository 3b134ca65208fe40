"""Operating the pipeline from outside its data path: consumer-group lag and outbox gauges.

Each module is one operation: ``lag`` (committed offsets against high watermarks, per
partition, readable while the consumer is down), ``lag_view`` (how ``handwerk lag`` shows it)
and ``outbox`` (the outbox gauges refreshed by any process that has the database);
``reconcile`` (drift between database and index, and its repair), ``in_flight`` (what the
pipeline still carries, so it is not drift), ``log_loss`` (the signal that the broker lost its
log) and ``reconcile_loop`` (when reconcile runs in the consuming process).
"""
