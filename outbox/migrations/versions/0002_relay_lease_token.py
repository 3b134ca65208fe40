"""relay lease fencing token

Revision ID: 0002
Revises: 0001
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    with op.batch_alter_table("relay_lease") as batch:
        batch.add_column(sa.Column("token", sa.Integer, nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("relay_lease") as batch:
        batch.drop_column("token")
