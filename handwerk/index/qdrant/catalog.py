"""Generations on a Qdrant server (``GenerationCatalog``): a collection each, and a Qdrant
alias names the live one. ``activate`` switches the alias in one atomic
``update_collection_aliases`` call, so a search through the alias never finds no collection.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qdrant_client import models

from handwerk.index.catalog import AliasFolder
from handwerk.index.qdrant.adapter import (
    QdrantServerIndex,
    alias_target,
    collection_name,
    generation_of,
)
from handwerk.index.qdrant.connection import QdrantConnection
from handwerk.index.qdrant.errors import client_errors


class QdrantCatalog:
    """Generations on a Qdrant server: one collection ``{alias}_{generation}`` each, and the
    Qdrant alias names the live one. Metadata lives in ``folder``, as for Qdrant Edge.

    Each call connects for its own duration through ``connection``: to a server, a client of
    its own; to a local-mode store, the connection's one client, which the indexes it hands out
    share (an in-memory store lives only while one of them is open)."""

    def __init__(self, root: Path, alias: str, *, connection: QdrantConnection) -> None:
        self.folder = AliasFolder(root, alias)
        self.connection = connection
        self._alias = alias

    def index(self, generation: str, *, model: str, dimension: int) -> QdrantServerIndex:
        return QdrantServerIndex(alias=self._alias, model=model, dimension=dimension,
                                 connection=self.connection, generation=generation,
                                 folder=self.folder)

    async def current(self) -> str | None:
        client = self.connection.connect()
        try:
            with client_errors("get aliases"):
                collection = await alias_target(client, self._alias)
        finally:
            await self.connection.disconnect(client)
        return generation_of(self._alias, collection) if collection is not None else None

    async def activate(self, generation: str) -> None:
        """One ``update_collection_aliases`` call: Qdrant applies its operations atomically,
        so a search through the alias finds either the old generation or the new one."""
        collection = collection_name(self._alias, generation)
        client = self.connection.connect()
        try:
            with client_errors("activate"):
                exists = await client.collection_exists(collection)
                previous = await alias_target(client, self._alias)
            if not exists:
                raise FileNotFoundError(f"generation {generation} has no collection {collection}")
            operations: list[Any] = []
            if previous is not None:  # deleting an alias that does not exist is an error
                operations.append(models.DeleteAliasOperation(
                    delete_alias=models.DeleteAlias(alias_name=self._alias)))
            operations.append(models.CreateAliasOperation(create_alias=models.CreateAlias(
                collection_name=collection, alias_name=self._alias)))
            with client_errors("activate"):
                await client.update_collection_aliases(change_aliases_operations=operations)
        finally:
            await self.connection.disconnect(client)

    async def drop(self, generation: str) -> None:
        """Deleting a collection also deletes the aliases naming it, so the active generation
        is refused (another process activating it between the check and the delete is not
        guarded against: activations and drops come from one reindex process)."""
        collection = collection_name(self._alias, generation)
        client = self.connection.connect()
        try:
            with client_errors("get aliases"):
                active = await alias_target(client, self._alias)
            if active == collection:
                raise ValueError(f"generation {generation} is active; activate another one first")
            with client_errors("drop"):
                await client.delete_collection(collection)
        finally:
            await self.connection.disconnect(client)
        self.folder.remove(generation)
