"""The deterministic demo projects, for ``handwerk demo-data``, the bench, scripts/ and tests.

They live in the installed package (``handwerk.relevance.demo``), because the relevance
benchmark's corpus is made of them and the model-switch gate scores models on it in the
service; this module keeps the names where tooling and tests import them.
"""

from handwerk.relevance.demo import (
    CONTEXTS,
    ENGLISH_SHARE,
    KINDS,
    MONTHS,
    REGIONS,
    TEMPLATES,
    WOODS,
    DemoFacts,
    Kind,
    demo_corpus,
    demo_project,
    demo_projects,
)

__all__ = ["CONTEXTS", "ENGLISH_SHARE", "KINDS", "MONTHS", "REGIONS", "TEMPLATES", "WOODS",
           "DemoFacts", "Kind", "demo_corpus", "demo_project", "demo_projects"]
