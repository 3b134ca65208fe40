"""handwerk: a similarity index of craftsman projects kept provably in sync with its database.

The stages live in their own packages (``handwerk.outbox``, ``handwerk.producer``,
``handwerk.consumer``, ``handwerk.api``); what they share lives here: settings, the
event contract, the embedder and the vector-index adapters.
"""

__version__ = "0.1.0"
