"""A small Server-Sent Events reader for tests, written to the WHATWG framing rules."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import httpx


@dataclass
class Event:
    event: str
    data: str
    id: str | None


def read_events(
    client: httpx.Client, url: str, headers: dict[str, str] | None = None, **params: str
) -> Iterator[Event]:
    """Yield events until the server closes the stream."""
    all_headers = {"Accept": "text/event-stream", **(headers or {})}
    with client.stream("GET", url, headers=all_headers, params=params, timeout=60) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        yield from _parse(response.iter_lines())


def _parse(lines: Iterator[str]) -> Iterator[Event]:
    name, event_id = "message", None
    data: list[str] = []
    for line in lines:
        if line == "":
            if data:
                yield Event(name, "\n".join(data), event_id)
            name, data = "message", []
        elif line.startswith(":"):
            continue
        else:
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "event":
                name = value
            elif field == "data":
                data.append(value)
            elif field == "id":
                event_id = value
