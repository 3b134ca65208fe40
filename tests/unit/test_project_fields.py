"""One definition of a project's fields (ProjectFields): the database columns, the API's
strict request model and the public event JSON Schema must agree with it, field by field and
bound by bound. Adding a field without updating one of them fails here, with its name."""

from __future__ import annotations

from typing import Any

import pytest

from handwerk.api.schemas import ProjectIn, ProjectOut, SimilarProject
from handwerk.contract.events import event_schema
from handwerk.outbox.models import Project
from handwerk.outbox.project_fields import PROJECT_FIELDS, ProjectFields

BOUNDS = ("type", "minLength", "maxLength", "minimum", "maximum")


def _bounds(prop: dict[str, Any]) -> dict[str, Any]:
    return {k: float(v) if k in ("minimum", "maximum") else v
            for k, v in prop.items() if k in BOUNDS}


def test_database_columns_hold_every_field() -> None:
    columns = set(Project.__table__.columns.keys())
    assert set(PROJECT_FIELDS) <= columns
    assert columns - set(PROJECT_FIELDS) == {"id", "version", "created_at", "updated_at"}


def test_api_models_carry_exactly_the_fields() -> None:
    assert tuple(ProjectIn.model_fields) == PROJECT_FIELDS
    for model in (ProjectOut, SimilarProject):
        assert set(PROJECT_FIELDS) <= set(model.model_fields)


@pytest.mark.parametrize("name", PROJECT_FIELDS)
def test_event_schema_agrees_with_the_model(name: str) -> None:
    project = event_schema()["$defs"]["project"]
    assert set(project["required"]) == {"id", *PROJECT_FIELDS}
    model = ProjectFields.model_json_schema()["properties"][name]
    api = ProjectIn.model_json_schema()["properties"][name]
    assert _bounds(project["properties"][name]) == _bounds(model), name
    assert _bounds(api) == _bounds(model), name
