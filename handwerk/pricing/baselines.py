"""The baselines an estimate must beat, from the same projects the service holds: the median
price per m² of the job's type (and of its type and wood) times its area."""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping
from typing import Any


class Baselines:
    """Median price per m² by type and by (type, wood) over ``projects`` (dicts with
    ``project_type``, ``wood_type``, ``total_area_sqm``, ``final_price``)."""

    def __init__(self, projects: Iterable[Mapping[str, Any]]) -> None:
        by_type: dict[str, list[float]] = {}
        by_wood: dict[tuple[str, str], list[float]] = {}
        for p in projects:
            if p["total_area_sqm"] > 0 and p["final_price"] > 0:
                value = p["final_price"] / p["total_area_sqm"]
                by_type.setdefault(p["project_type"], []).append(value)
                by_wood.setdefault((p["project_type"], p["wood_type"].casefold()), []).append(value)
        self._type = {k: statistics.median(v) for k, v in by_type.items()}
        self._wood = {k: statistics.median(v) for k, v in by_wood.items()}

    def type_median(self, project_type: str, area: float) -> float | None:
        """The type's median price per m² times ``area``; None for a type never seen."""
        per_sqm = self._type.get(project_type)
        return None if per_sqm is None else per_sqm * area

    def type_wood_median(self, project_type: str, wood: str, area: float) -> float | None:
        """The same over projects of that type and wood; the type's alone where no project
        has that wood."""
        per_sqm = self._wood.get((project_type, wood.casefold()))
        return self.type_median(project_type, area) if per_sqm is None else per_sqm * area
