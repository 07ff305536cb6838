"""What a large read of an agent's open file serves from the bytes it read ahead, and when
it must ask the agent again (the whole path is tested through a real agent in
test_agent_gateway: a download of several reads)."""

from __future__ import annotations

from hpcgate.transports.agent import _Ahead


def test_reads_within_the_bytes_read_ahead_are_served_from_them() -> None:
    ahead = _Ahead(100, bytes(range(50)), end=False)
    assert ahead.within(100, 10) == bytes(range(10))
    assert ahead.within(140, 10) == bytes(range(40, 50))  # up to the last byte held


def test_a_read_beyond_them_asks_again_unless_the_file_ended_there() -> None:
    more = _Ahead(100, bytes(50), end=False)
    assert more.within(140, 11) is None  # past what is held: the file may go on
    assert more.within(99, 1) is None and more.within(151, 1) is None
    ended = _Ahead(100, bytes(50), end=True)
    assert ended.within(140, 11) == bytes(10)  # the file's last bytes
    assert ended.within(150, 10) == b""  # its end
    assert ended.within(151, 1) is None
