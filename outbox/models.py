"""SQLAlchemy models: projects (the source of truth), the deletes they leave, the outbox, and
the relay lease."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, DateTime, Float, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Project(Base):
    __tablename__ = "projects"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text)
    project_type: Mapped[str] = mapped_column(String(100), index=True)
    region: Mapped[str] = mapped_column(String(100), index=True)
    total_area_sqm: Mapped[float] = mapped_column(Float)
    wood_type: Mapped[str] = mapped_column(String(100))
    complexity: Mapped[int] = mapped_column(Integer)
    final_price: Mapped[float] = mapped_column(Float)
    version: Mapped[int] = mapped_column(BigInteger)  # up to 2**53 - 1 (the event contract)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (Index("ix_projects_created_at_id", "created_at", "id"),)


class DeletedProject(Base):
    """The database's memory of a delete (the outbox row of a delete is pruned after
    retention): written in the delete's transaction, with the delete event's version (the
    index's tombstone version). A writer that chooses ids itself (the legacy import) reads it
    so that it never re-creates a deleted project by accident; a deliberate restore removes the
    row and writes the project above this version."""

    __tablename__ = "deleted_projects"

    project_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger)
    deleted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class OutboxRow(Base):
    """One CloudEvent waiting to be published; ``seq`` is the publish order."""

    __tablename__ = "outbox"

    # bigint on PostgreSQL; on SQLite INTEGER (64-bit there) keeps it the rowid alias
    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"),
                                     primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(64), unique=True)
    project_id: Mapped[str] = mapped_column(String(36))
    version: Mapped[int] = mapped_column(BigInteger)
    event: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    published_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    __table_args__ = (Index("ix_outbox_unpublished", "published_at", "seq"),)


class RelayLease(Base):
    """Only the holder of an unexpired lease publishes (both databases; see producer/lease.py).

    ``token`` is the fencing token: it grows by one whenever the holder changes, and rows are
    marked published only while the marking relay still holds the lease under its token."""

    __tablename__ = "relay_lease"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(128))
    expires_at: Mapped[float] = mapped_column(Float)
    token: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
