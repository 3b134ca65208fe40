"""Kafka plumbing several stages share: the local tansu broker, topics, client options.

Code here must work on tansu (memory-only, no idempotent producer, wrong end_offsets) and
on Apache Kafka alike, so it relies on none of tansu's quirks. It may import ``settings`` and
``process`` only; the stages and operator tools import it.
"""

from handwerk.kafka.consumers import stop_consumer
from handwerk.kafka.local_broker import LocalBroker, free_port
from handwerk.kafka.options import bootstrap, client_options, producer_options
from handwerk.kafka.topics import ensure_topics, wait_for_topics

__all__ = ["LocalBroker", "bootstrap", "client_options", "ensure_topics", "free_port",
           "producer_options", "stop_consumer", "wait_for_topics"]
