"""API keys in the token service: migration 0010 leaves the tokens written before it full
tokens; a key is refused where keys are not taken, issues nothing, and one whose
restriction cannot be read is no token at all."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command

from hpcgate.model.errors import Forbidden, Unauthenticated
from hpcgate.model.principal import Principal, Restriction
from hpcgate.model.tokens import NewToken
from hpcgate.store.db import Database, alembic_config
from hpcgate.store.tables import TokenRow
from hpcgate.store.tokens import TokenStore
from hpcgate.tokens import TokenService, render, secret_digest

SECRET = "s" * 43


def _at_0009_with_rows(path: Path) -> None:
    """A database migrated to 0009 holding a token and an invocation of that time."""
    engine = sa.create_engine(f"sqlite:///{path}")
    with engine.begin() as connection:
        config = alembic_config()
        config.attributes["connection"] = connection
        command.upgrade(config, "0009")
        connection.execute(
            sa.text(
                "INSERT INTO tokens (id, user, secret_hash, scopes, description, created_at)"
                " VALUES ('0123456789ab', 'alice', :digest, 'jobs:read,jobs:write', 'old',"
                " '2026-01-01 00:00:00.000000')"
            ),
            {"digest": secret_digest(SECRET)},
        )
    engine.dispose()


async def test_a_token_from_before_the_keys_reads_as_a_full_token(tmp_path: Path) -> None:
    _at_0009_with_rows(tmp_path / "hpcgate.db")
    database = Database(f"sqlite+aiosqlite:///{tmp_path}/hpcgate.db")
    await database.start()  # migrates to the head
    try:
        service = TokenService(TokenStore(database))
        who = await service.authenticate(f"hpcg_0123456789ab_{SECRET}")
        assert (who.user, who.restriction, who.key_id) == ("alice", None, None)
        [row] = await service.list("alice")
        shown = render(row)
        assert (shown.functions, shown.limits, shown.description) == (None, None, "old")
    finally:
        await database.close()


async def _owns(maker: Principal, user: str, name: str) -> bool:
    return (user, name) == ("alice", "f")


async def test_a_key_is_refused_where_keys_are_not_taken_and_unreadable_is_no_key(
    tmp_path: Path,
) -> None:
    database = Database(f"sqlite+aiosqlite:///{tmp_path}/hpcgate.db")
    await database.start()
    try:
        store = TokenStore(database)
        service = TokenService(store, owns=_owns)
        full = await service.create("alice")
        parent = await service.authenticate(full.secret)
        key = await service.issue(parent, NewToken(functions=["f"]))
        with pytest.raises(Forbidden, match="only invoke its functions"):
            await service.authenticate(key.token)
        who = await service.authenticate(key.token, keys=True)
        assert who.restriction == Restriction(frozenset({"f"})) and who.key_id == key.id
        with pytest.raises(Forbidden):  # a key issues nothing, not even through the service
            await service.issue(who, NewToken())
        async with database.session() as session, session.begin():
            row = await session.get(TokenRow, key.id)
            assert row is not None
            row.functions = '{"not": "a list"}'
        fresh = TokenService(store, owns=_owns)
        with pytest.raises(Unauthenticated, match=r"^invalid token$"):
            await fresh.authenticate(key.token, keys=True)
    finally:
        await database.close()
