"""The agent's kept results on their own: what is kept, for how long, within which bounds,
and what a restarted agent takes up from its state directory (and what it throws away)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import anyio
import pytest

from hpcgate.agent import keeper as k
from hpcgate.agent.keeper import RUNNING, UNKNOWN, ResultKeeper


async def _nowhere(channel: int, body: dict[str, object]) -> None:
    raise AssertionError("no connection waits")


async def keep(keeper: ResultKeeper, key: tuple[str, int], body: dict[str, object]) -> None:
    keeper.started(key, anyio.CancelScope(), _nowhere)
    keeper.detach(_nowhere)
    await keeper.finished(key, body)


async def test_a_result_is_kept_on_disk_until_acknowledged_and_taken_up_after_a_restart(
    tmp_path: Path,
) -> None:
    keeper = ResultKeeper(tmp_path)
    keeper.load()
    await keep(keeper, ("e1", 5), {"ok": True, "value": None})
    (spooled,) = (tmp_path / "results").iterdir()
    assert stat.S_IMODE(spooled.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "results").stat().st_mode) == 0o700
    again = ResultKeeper(tmp_path)  # a new process of the same agent
    again.load()
    assert again.offer(("e1", 5), _nowhere) == {"ok": True, "value": None}
    assert again.offer(("e2", 5), _nowhere) == UNKNOWN  # another gateway's epoch
    again.acknowledged(("e1", 5))
    assert again.offer(("e1", 5), _nowhere) == UNKNOWN
    assert list((tmp_path / "results").iterdir()) == []


async def test_a_running_request_is_running_and_a_cancelled_one_is_not_kept(
    tmp_path: Path,
) -> None:
    keeper = ResultKeeper(tmp_path)
    keeper.load()
    keeper.started(("e", 1), anyio.CancelScope(), _nowhere)
    assert keeper.offer(("e", 1), _nowhere) == RUNNING and keeper.known(("e", 1))
    await keeper.finished(("e", 1), None)
    assert keeper.offer(("e", 1), _nowhere) == UNKNOWN and not keeper.known(("e", 1))


async def test_the_oldest_results_go_beyond_the_bounds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(k, "MAX_KEPT", 3)
    keeper = ResultKeeper(tmp_path)
    keeper.load()
    for channel in range(5):
        await keep(keeper, ("e", channel), {"ok": True, "value": channel})
    kept = [c for c in range(5) if keeper.offer(("e", c), _nowhere) != UNKNOWN]
    assert kept == [2, 3, 4]
    assert len(list((tmp_path / "results").iterdir())) == 3


async def test_expired_torn_and_foreign_files_are_not_taken_up(tmp_path: Path) -> None:
    results = tmp_path / "results"
    results.mkdir(mode=0o700)
    old = {"at": 0, "body": {"ok": True, "value": 1}}
    (results / "e-1.json").write_text(json.dumps(old))  # expired long ago
    (results / "e-2.json").write_text('{"at": 1')  # torn by a kill
    (results / "e-3.txt").write_text(json.dumps(old))  # not a result's name
    os.symlink("/etc/passwd", results / "e-4.json")  # never followed
    keeper = ResultKeeper(tmp_path)
    keeper.load()
    assert all(keeper.offer(("e", c), _nowhere) == UNKNOWN for c in (1, 2, 3, 4))
    assert not (results / "e-2.json").exists() and not (results / "e-4.json").is_symlink()


async def test_a_delivered_result_is_written_only_if_its_ack_is_late(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(k, "SPOOL_AFTER", 0.05)
    keeper = ResultKeeper(tmp_path)
    keeper.load()
    sent: list[int] = []

    async def connection(channel: int, body: dict[str, object]) -> None:
        sent.append(channel)

    for channel in (1, 2):
        keeper.started(("e", channel), anyio.CancelScope(), connection)
        await keeper.finished(("e", channel), {"ok": True, "value": channel})
    assert sent == [1, 2] and list((tmp_path / "results").iterdir()) == []
    keeper.acknowledged(("e", 1))  # in time: never written
    await keeper.spool_unacknowledged(("e", 1))
    await keeper.spool_unacknowledged(("e", 2))  # late: written, and offered after a restart
    assert [path.name for path in (tmp_path / "results").iterdir()] == ["e-2.json"]
    again = ResultKeeper(tmp_path)
    again.load()
    assert again.offer(("e", 2), _nowhere) == {"ok": True, "value": 2}
    assert again.offer(("e", 1), _nowhere) == UNKNOWN
