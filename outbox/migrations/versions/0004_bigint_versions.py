"""64-bit versions and outbox sequence on PostgreSQL

The event contract allows versions up to 2**53 - 1 (handwerk/contract/project-event.schema.json)
and a busy outbox outgrows a 32-bit ``seq``: PostgreSQL's ``integer`` is 32-bit, so these
columns (and the sequence behind ``outbox.seq``) become ``bigint`` there. SQLite's INTEGER is
64-bit already (``outbox.seq`` stays the rowid alias), so nothing changes on SQLite.

Revision ID: 0004
Revises: 0003
"""
import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"

_COLUMNS = (("projects", "version"), ("outbox", "version"), ("outbox", "seq"))


def _retype(column_type: type[sa.types.TypeEngine[int]], sequence_type: str) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, column in _COLUMNS:
        op.alter_column(table, column, type_=column_type(), existing_nullable=False)
    # SERIAL made the sequence "AS integer" (max 2**31 - 1); retyping the column leaves it so
    op.execute(f"ALTER SEQUENCE IF EXISTS outbox_seq_seq AS {sequence_type}")


def upgrade() -> None:
    _retype(sa.BigInteger, "bigint")


def downgrade() -> None:
    _retype(sa.Integer, "integer")
