"""projects, outbox and relay lease

Revision ID: 0001
Revises:
"""
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None


def upgrade() -> None:
    op.create_table(
        "projects",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("project_type", sa.String(100), nullable=False),
        sa.Column("region", sa.String(100), nullable=False),
        sa.Column("total_area_sqm", sa.Float, nullable=False),
        sa.Column("wood_type", sa.String(100), nullable=False),
        sa.Column("complexity", sa.Integer, nullable=False),
        sa.Column("final_price", sa.Float, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("complexity BETWEEN 1 AND 5", name="ck_projects_complexity"),
        sa.CheckConstraint("version >= 1", name="ck_projects_version"),
    )
    op.create_index("ix_projects_project_type", "projects", ["project_type"])
    op.create_index("ix_projects_region", "projects", ["region"])
    op.create_index("ix_projects_created_at_id", "projects", ["created_at", "id"])
    op.create_table(
        "outbox",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.String(64), nullable=False, unique=True),
        sa.Column("project_id", sa.String(36), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("event", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_outbox_unpublished", "outbox", ["published_at", "seq"])
    op.create_table(
        "relay_lease",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("holder", sa.String(128), nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("relay_lease")
    op.drop_table("outbox")
    op.drop_table("projects")
