"""Flow control of the agent's channels: a sender never sends past its grant, a receiver
refuses a peer that does, and grants follow what the consumer took."""

from __future__ import annotations

import anyio
import pytest

from hpcgate.agentwire.credit import MAX_WINDOW, ReceiveWindow, SendWindow
from hpcgate.agentwire.frames import (
    MAX_DATA_BODY,
    PEER_DATA_BODY,
    Kind,
    ProtocolError,
    control,
    decode,
)
from hpcgate.agentwire.pipe import Pipe, credit


async def test_take_is_bounded_by_window_and_frame() -> None:
    window = SendWindow(100_000)
    assert await window.take(1_000_000) == PEER_DATA_BODY  # a peer that said nothing
    assert await window.take(1_000_000) == 100_000 - PEER_DATA_BODY
    assert window.available == 0


async def test_a_peer_that_takes_larger_frames_gets_them_up_to_ours() -> None:
    window = SendWindow(0)
    window.grant(MAX_WINDOW // 2, frame=MAX_WINDOW)  # it takes any size: ours bounds it
    assert await window.take(MAX_WINDOW) == MAX_DATA_BODY
    window.grant(1, frame=PEER_DATA_BODY)
    assert await window.take(MAX_WINDOW) == PEER_DATA_BODY


@pytest.mark.parametrize("frame", [0, PEER_DATA_BODY - 1, MAX_WINDOW + 1])
def test_a_frame_size_below_every_peers_or_past_the_window_is_refused(frame: int) -> None:
    window = SendWindow(0)
    with pytest.raises(ProtocolError):
        window.grant(10, frame=frame)
    assert window.available == 0  # nothing granted


async def test_a_sender_waits_for_credit() -> None:
    window = SendWindow(0)
    taken: list[int] = []

    async def sender() -> None:
        taken.append(await window.take(10))

    async with anyio.create_task_group() as group:
        group.start_soon(sender)
        await anyio.wait_all_tasks_blocked()
        assert taken == []  # nothing granted: nothing sent
        window.grant(4)
    assert taken == [4]


async def test_closing_releases_a_waiting_sender() -> None:
    window = SendWindow(0)
    with anyio.fail_after(5):
        async with anyio.create_task_group() as group:

            async def sender() -> None:
                with pytest.raises(anyio.ClosedResourceError):
                    await window.take(1)

            group.start_soon(sender)
            await anyio.wait_all_tasks_blocked()
            window.close()


@pytest.mark.parametrize("amount", [0, -1, MAX_WINDOW + 1])
def test_a_lying_grant_is_refused(amount: int) -> None:
    with pytest.raises(ProtocolError):
        SendWindow(0).grant(amount)


def test_grants_cannot_pile_past_the_largest_window() -> None:
    window = SendWindow(MAX_WINDOW - 10)
    window.grant(10)
    with pytest.raises(ProtocolError):
        window.grant(1)


def test_data_beyond_the_grant_is_refused() -> None:
    window = ReceiveWindow(1000)
    window.received(600)
    window.received(400)
    with pytest.raises(ProtocolError):
        window.received(1)


def test_grants_come_in_batches_of_half_a_window() -> None:
    window = ReceiveWindow(1000)
    window.received(1000)
    assert window.consumed(300) == 0
    assert window.consumed(300) == 600  # past half: all taken so far is granted back
    window.received(600)  # exactly what was granted again
    with pytest.raises(ProtocolError):
        window.received(1)
    assert window.consumed(1000) == 1000


def test_consuming_more_than_arrived_is_a_bug() -> None:
    window = ReceiveWindow(1000)
    window.received(10)
    with pytest.raises(ValueError, match="11 bytes consumed of 10"):
        window.consumed(11)


@pytest.mark.parametrize("body", [{"bytes": 10, "frame": True}, {"bytes": 10, "frame": "1e6"}])
async def test_a_credit_whose_frame_size_is_no_whole_number_is_refused(
    body: dict[str, object],
) -> None:
    sent: list[bytes] = []

    async def send(frame: bytes) -> None:
        sent.append(frame)

    pipe = Pipe(1, send, may_send=0)
    with pytest.raises(ProtocolError):
        pipe.deliver(decode(control(Kind.CREDIT, 1, body)))
    assert not pipe.opened.is_set()  # nothing granted


async def test_a_pipe_sends_frames_as_large_as_the_credit_allows() -> None:
    sent: list[bytes] = []

    async def send(frame: bytes) -> None:
        sent.append(frame)

    pipe = Pipe(1, send, may_send=0)
    pipe.deliver(decode(credit(1, MAX_DATA_BODY * 2)))
    await pipe.send(b"x" * (MAX_DATA_BODY * 2))
    assert [len(decode(frame).body) for frame in sent] == [MAX_DATA_BODY, MAX_DATA_BODY]
