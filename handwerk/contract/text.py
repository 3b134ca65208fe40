"""What of a project is embedded (``project_text``) and the hash that identifies that text
(``text_hash``): part of the event contract, since an index point records the hash and only a
change of these fields makes a project be embedded again."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

TEXT_TEMPLATE = ("{name}. {description} Typ: {project_type}. Holz: {wood_type}. "
                 "Region: {region}.")
"""What is embedded of a project; every index generation records it (with its model)."""


def project_text(project: Mapping[str, Any]) -> str:
    """The text that is embedded; only these fields trigger a re-embedding when they change."""
    return TEXT_TEMPLATE.format(
        name=project["name"], description=project["description"],
        project_type=project["project_type"], wood_type=project["wood_type"],
        region=project["region"])


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()
