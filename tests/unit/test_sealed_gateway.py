"""What the gateway makes of an encrypted invocation's events without reading them: which
may be relayed, and what of a sealed end it records."""

from __future__ import annotations

import json
from typing import Any

import pytest

from hpcgate.functions.invocations import _end_state, _stored_error, unsealed
from hpcgate.model.functions import InvocationState

SEALED = {"sealed": "AAAA"}


@pytest.mark.parametrize(
    ("event", "refused"),
    [
        ({"seq": 1, "type": "key", "data": {"public_key": "k"}}, False),
        ({"seq": 2, "type": "output", "data": SEALED}, False),
        ({"seq": 2, "type": "result", "data": SEALED}, False),
        (
            {"seq": 1, "type": "error", "data": {"type": "EncryptionUnavailable", "message": ""}},
            False,
        ),
        ({"seq": 2, "type": "output", "data": "in clear"}, True),
        ({"seq": 2, "type": "output", "data": {"data": "x", "encoding": "base64"}}, True),
        ({"seq": 2, "type": "result", "data": None}, True),
        ({"seq": 2, "type": "error", "data": {"type": "ValueError", "message": "in clear"}}, True),
    ],
)
def test_only_sealed_events_are_relayed(event: dict[str, Any], refused: bool) -> None:
    assert unsealed(event) is refused


def test_a_sealed_end_is_recorded_without_its_content() -> None:
    failed = {"seq": 3, "type": "error", "data": SEALED}
    cancelled = {"seq": 3, "type": "error", "data": {**SEALED, "state": "cancelled"}}
    assert _end_state(failed) == InvocationState.FAILED
    assert _end_state(cancelled) == InvocationState.CANCELLED
    in_clear = {"seq": 3, "type": "error", "data": {"type": "Cancelled", "message": "by x"}}
    assert _end_state(in_clear) == InvocationState.CANCELLED  # as before encryption
    recorded = json.loads(_stored_error(failed) or "{}")
    assert recorded["type"] == "Sealed" and "AAAA" not in json.dumps(recorded)
