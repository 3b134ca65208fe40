"""deleted projects: the database remembers every delete (issue 18 §1)

One row per deleted project id with the delete event's version (the index's tombstone
version), written in the delete's transaction. The outbox row of a delete is pruned after
retention, so without this table nothing in the database says that an id was deleted, and the
legacy import (which chooses ids itself) re-created deleted projects. Deletes still in the
outbox when this runs are recorded from there; older ones cannot be recovered.

Revision ID: 0005
Revises: 0004
"""
import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"


def upgrade() -> None:
    op.create_table(
        "deleted_projects",
        sa.Column("project_id", sa.String(36), primary_key=True),
        sa.Column("version", sa.BigInteger, nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=False),
    )
    # outbox events are compact JSON (separators without spaces, see outbox/store.py)
    op.execute(sa.text(
        "INSERT INTO deleted_projects (project_id, version, deleted_at) "
        "SELECT project_id, MAX(version), MAX(created_at) FROM outbox "
        "WHERE event LIKE :deleted AND project_id NOT IN (SELECT id FROM projects) "
        "GROUP BY project_id").bindparams(deleted='%"type":"handwerk.project.deleted"%'))


def downgrade() -> None:
    op.drop_table("deleted_projects")
