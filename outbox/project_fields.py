"""Validated project fields: what a writer (REST or CLI) may change."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

Short = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]


class ProjectFields(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)

    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
    description: Annotated[str, StringConstraints(max_length=10_000)] = ""
    project_type: Short = Field(examples=["kitchen"])
    region: Short = Field(examples=["Bayern"])
    total_area_sqm: float = Field(ge=0, le=1_000_000)
    wood_type: Annotated[str, StringConstraints(strip_whitespace=True, max_length=100)] = ""
    complexity: int = Field(ge=1, le=5)
    final_price: float = Field(ge=0, le=1e10)

    @field_validator("name", "description", "project_type", "region", "wood_type")
    @classmethod
    def _no_nul(cls, value: str) -> str:
        """PostgreSQL cannot store U+0000 in text (SQLite can): refused here, for every
        writer (the API refuses it earlier, api/strict.py ``NO_NUL``; a legacy import counts
        such a row failed instead of losing its whole chunk to the database's error)."""
        if "\x00" in value:
            raise ValueError("must not contain U+0000 (NUL): PostgreSQL cannot store it")
        return value


PROJECT_FIELDS: tuple[str, ...] = tuple(ProjectFields.model_fields)
"""The one list of a project's own fields. Mappers iterate it; the database columns, the API's
request model and the event JSON Schema are checked against it (tests/unit/test_project_fields.py),
so adding a field is an edit here, a column plus a migration, and what those tests name."""

