"""Settings: one frozen object made of one group per stage, read from ``HANDWERK_*`` variables
at the entry point only and passed down; a stage receives its own group.

``groups`` defines every field once (its environment name, default, bounds and description),
``model`` loads and groups them, ``rules`` holds the load-time checks and secret files, and
``clients`` turns the Qdrant TLS settings into client options. Anything may import this
package; it imports nothing of handwerk's beyond itself.
"""

from handwerk.settings.model import Settings, environment_variables

__all__ = ["Settings", "environment_variables"]
