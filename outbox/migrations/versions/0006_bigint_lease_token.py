"""64-bit relay lease fencing token on PostgreSQL

0004 widened every other counter; ``relay_lease.token`` (added by 0002) stayed ``integer``
there. It grows by one per takeover only, but a counter that fences writes must not be the one
that can overflow. SQLite's INTEGER is 64-bit already, so nothing changes on SQLite. The
downgrade fails, as it should, if a token no longer fits 32 bits.

Revision ID: 0006
Revises: 0005
"""
import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"


def _retype(column_type: type[sa.types.TypeEngine[int]]) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.alter_column("relay_lease", "token", type_=column_type(), existing_nullable=False,
                    existing_server_default=sa.text("0"))


def upgrade() -> None:
    _retype(sa.BigInteger)


def downgrade() -> None:
    _retype(sa.Integer)
