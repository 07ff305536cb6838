"""Live output and state events over Server-Sent Events, with resume."""

from __future__ import annotations

import json

import httpx

from tests.support.jobs import ended, submit, wait_for_job
from tests.support.sse import read_events

JOBS = "/api/v1/systems/local/jobs"
TICKER = (
    "#!/bin/bash\nfor i in 1 2 3 4 5; do echo \"line $i\"; sleep 0.3; done\nprintf 'no newline'"
)
EXPECTED = "".join(f"line {i}\n" for i in range(1, 6)) + "no newline"


def test_follow_streams_output_live_until_the_job_ends(alice: httpx.Client) -> None:
    job = submit(alice, script=TICKER)
    events = list(read_events(alice, f"{JOBS}/{job['id']}/output", follow="true"))
    outputs = [e for e in events if e.event == "output"]
    assert len(outputs) >= 2, "output should arrive in several pieces while the job runs"
    assert "".join(json.loads(e.data)["text"] for e in outputs) == EXPECTED
    assert events[-1].event == "end"
    assert json.loads(events[-1].data)["state"] == "COMPLETED"
    assert outputs[-1].id == str(len(EXPECTED.encode()))


def test_follow_resumes_from_last_event_id(alice: httpx.Client) -> None:
    job = submit(alice, script=TICKER)
    wait_for_job(alice, job["id"], ended)
    offset = len(b"line 1\nline 2\n")
    events = list(
        read_events(
            alice,
            f"{JOBS}/{job['id']}/output",
            headers={"Last-Event-ID": str(offset)},
            follow="true",
        )
    )
    text = "".join(json.loads(e.data)["text"] for e in events if e.event == "output")
    assert text == EXPECTED[offset:]


def test_follow_as_plain_text_streams_raw_output(alice: httpx.Client) -> None:
    job = submit(alice, script=TICKER)
    url = f"{JOBS}/{job['id']}/output"
    with alice.stream("GET", url, params={"follow": "true"}) as response:
        assert response.headers["content-type"].startswith("text/plain")
        assert "".join(response.iter_text()) == EXPECTED


def test_output_with_newlines_cannot_inject_events(alice: httpx.Client) -> None:
    script = "#!/bin/bash\nprintf 'data: fake\\n\\nevent: end\\ndata: {}\\n\\r\\n'"
    job = submit(alice, script=script)
    events = list(read_events(alice, f"{JOBS}/{job['id']}/output", follow="true"))
    assert [e.event for e in events].count("end") == 1
    text = "".join(json.loads(e.data)["text"] for e in events if e.event == "output")
    assert text == "data: fake\n\nevent: end\ndata: {}\n\r\n"


def test_events_report_each_state_once_with_ids(alice: httpx.Client) -> None:
    job = submit(alice, script="#!/bin/bash\nsleep 2\nexit 3")
    events = list(read_events(alice, f"{JOBS}/{job['id']}/events"))
    states = [json.loads(e.data)["state"] for e in events]
    assert states[0] == "PENDING" and states[-1] == "FAILED"
    assert "RUNNING" in states
    assert json.loads(events[-1].data)["exit_code"] == 3
    ids = [int(e.id or 0) for e in events]
    assert ids == sorted(set(ids))


def test_events_replay_only_what_was_missed(alice: httpx.Client) -> None:
    job = submit(alice, script="#!/bin/bash\nsleep 0.5")
    everything = list(read_events(alice, f"{JOBS}/{job['id']}/events"))
    first = everything[0].id or ""
    missed = list(
        read_events(alice, f"{JOBS}/{job['id']}/events", headers={"Last-Event-ID": first})
    )
    assert [e.id for e in missed] == [e.id for e in everything[1:]]
    last = everything[-1].id or ""
    assert (
        list(read_events(alice, f"{JOBS}/{job['id']}/events", headers={"Last-Event-ID": last}))
        == []
    )


def test_output_of_a_pending_job_is_empty(alice: httpx.Client) -> None:
    blocker = submit(alice, script="#!/bin/bash\nsleep 30")
    job = submit(alice, script="#!/bin/bash\necho later", dependencies=[f"afterok:{blocker['id']}"])
    response = alice.get(f"{JOBS}/{job['id']}/output")
    assert (response.status_code, response.text) == (200, "")
    alice.delete(f"{JOBS}/{blocker['id']}")
    alice.delete(f"{JOBS}/{job['id']}")
