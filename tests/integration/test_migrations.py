"""Migrations on both databases: head has 64-bit counters everywhere (the relay lease's
fencing token included, issue 18 §6), and the newest downgrades run and can be re-applied
with data in the tables."""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from handwerk.outbox.database import MIGRATIONS, create_engine, run_migrations, session_factory
from handwerk.outbox.project_fields import ProjectFields
from handwerk.outbox.store import ProjectStore

FIELDS = ProjectFields(name="Dachstuhl", description="Pfettendach Fichte",
                       project_type="roof", region="Thüringen", total_area_sqm=120.0,
                       wood_type="Fichte", complexity=4, final_price=38_000.0)
BIG = 2**40  # above int4


def _config(connection: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


async def _downgrade(engine: AsyncEngine, revision: str) -> None:
    async with engine.begin() as connection:
        await connection.run_sync(lambda c: command.downgrade(_config(c), revision))


async def _revision(engine: AsyncEngine) -> str | None:
    async with engine.connect() as connection:
        return await connection.run_sync(
            lambda c: MigrationContext.configure(c).get_current_revision())


async def _column_types(engine: AsyncEngine) -> dict[tuple[str, str], str]:
    def read(connection: Connection) -> dict[tuple[str, str], str]:
        inspector = inspect(connection)
        return {(table, column["name"]): str(column["type"]).upper()
                for table in ("projects", "outbox", "relay_lease")
                for column in inspector.get_columns(table)}
    async with engine.connect() as connection:
        return await connection.run_sync(read)


async def _sequence_type(engine: AsyncEngine) -> str | None:
    async with engine.connect() as connection:
        return await connection.scalar(text(
            "SELECT data_type FROM information_schema.sequences "
            "WHERE sequence_name = 'outbox_seq_seq'"))


async def _tables(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as connection:
        return set(await connection.run_sync(lambda c: inspect(c).get_table_names()))


async def test_head_is_64_bit_and_the_newest_downgrades_round_trip(database_url: str) -> None:
    engine = create_engine(database_url)
    postgres = engine.dialect.name == "postgresql"
    try:
        await run_migrations(engine)
        head = await _revision(engine)
        if postgres:
            types = await _column_types(engine)
            for column in (("projects", "version"), ("outbox", "version"), ("outbox", "seq"),
                           ("relay_lease", "token")):
                assert types[column] == "BIGINT", (column, types[column])
            assert await _sequence_type(engine) == "bigint"
        # data in every table the downgrades touch, a 64-bit fencing token among it
        store = ProjectStore(session_factory(engine))
        kept = await store.create(FIELDS)
        gone = await store.create(FIELDS)
        await store.delete(gone.id)
        async with engine.begin() as connection:
            await connection.execute(text(
                "INSERT INTO relay_lease (name, holder, expires_at, token) "
                "VALUES ('relay', 'h1', 1.0, :token)"), {"token": BIG})
            assert await connection.scalar(text("SELECT token FROM relay_lease")) == BIG
            await connection.execute(text("UPDATE relay_lease SET token = 7"))  # fits int4 again

        await _downgrade(engine, "0003")  # undoes 0004 and everything after it
        assert await _revision(engine) == "0003"
        if postgres:
            types = await _column_types(engine)
            assert types[("projects", "version")] == types[("relay_lease", "token")] == "INTEGER"
            assert await _sequence_type(engine) == "integer"
        assert "deleted_projects" not in await _tables(engine)
        async with engine.connect() as connection:
            assert await connection.scalar(text("SELECT token FROM relay_lease")) == 7
            assert await connection.scalar(text("SELECT count(*) FROM projects")) == 1

        await run_migrations(engine)  # and up again
        assert await _revision(engine) == head
        if postgres:
            assert (await _column_types(engine))[("relay_lease", "token")] == "BIGINT"
            assert await _sequence_type(engine) == "bigint"
        async with engine.connect() as connection:  # the delete, still in the outbox, is known
            assert (await connection.execute(text(
                "SELECT project_id, version FROM deleted_projects"))).all() == [(gone.id, 2)]
        async with engine.begin() as connection:
            await connection.execute(text("UPDATE relay_lease SET token = :token"), {"token": BIG})
            assert await connection.scalar(text("SELECT token FROM relay_lease")) == BIG
        assert (await store.get(kept.id)).version == 1
        again = await store.create(FIELDS)  # the outbox sequence still hands out numbers
        await store.delete(again.id)
    finally:
        await engine.dispose()
