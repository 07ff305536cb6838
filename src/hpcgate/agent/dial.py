"""Dialling out: connect to the gateway's ``/api/v1/agent/connect`` over a WebSocket (TLS
verified, with the configured CA besides the system's), run a session, and after any break
connect again, forever, waiting a random time up to a cap that doubles from 0.5 s to 30 s
("full jitter"), so that many agents cut at once do not return at once.
"""

from __future__ import annotations

import logging
import os
import platform
import random
import ssl
import uuid
from importlib import metadata
from pathlib import Path

import anyio
from anyio.abc import TaskGroup
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus, WebSocketException

from hpcgate.agent.bulk import BulkSender
from hpcgate.agent.config import AgentConfig
from hpcgate.agent.keeper import ResultKeeper
from hpcgate.agent.policy import Policy
from hpcgate.agent.serve import Server
from hpcgate.agent.session import Closed, Session
from hpcgate.agent.streams import Streams
from hpcgate.agent.targets import StreamTargets
from hpcgate.agentwire import messages as m
from hpcgate.agentwire.frames import HEADER, MAX_CONTROL_BODY, ProtocolError
from hpcgate.model.commands import Command
from hpcgate.transports.local import LocalTransport

try:
    __version__ = metadata.version("hpcgate")
except metadata.PackageNotFoundError:  # a source checkout
    __version__ = "0+unknown"
FIRST_WAIT = 0.5
MAX_WAIT = 30.0
NODES_TIMEOUT = 30.0
log = logging.getLogger("hpcgate.agent")


def backoff(attempt: int, rng: random.Random) -> float:
    """Seconds to wait before connection attempt ``attempt`` (0: the first retry)."""
    return rng.uniform(0, min(MAX_WAIT, FIRST_WAIT * 2 ** min(attempt, 16)))


def ssl_context(config: AgentConfig) -> ssl.SSLContext | None:
    """Certificate and host name verified; the configured CA trusted besides the system's."""
    if not config.url.startswith("wss://"):
        return None
    context = ssl.create_default_context()
    if config.ca_file is not None:
        context.load_verify_locations(cafile=str(config.ca_file))
    return context


def agent_id(state_dir: Path) -> str:
    """This agent's id, kept in ``state_dir`` across restarts (a new one if it cannot be)."""
    path = state_dir / "agent-id"
    try:
        return path.read_text().strip()
    except OSError:
        made = uuid.uuid4().hex[:16]
        try:
            state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            path.write_text(made + "\n")
        except OSError:
            log.warning("cannot keep the agent id in %s; using %s", state_dir, made)
        return made


class Dialer:
    def __init__(self, config: AgentConfig, rng: random.Random | None = None) -> None:
        self._config = config
        self._policy = Policy(config)
        self._transport = LocalTransport()
        self._rng = rng or random.SystemRandom()
        self._keeper = ResultKeeper(config.state_dir)
        self.targets = StreamTargets(config, self._list_nodes)

    def hello(self) -> m.Hello:
        ident = agent_id(self._config.state_dir)
        return m.Hello(
            ident, platform.node(), __version__, self._config.scheduler, self._policy.serves
        )

    async def _list_nodes(self, argv: tuple[str, ...]) -> bytes:
        """The scheduler's node list, asked as the agent itself (for :mod:`.targets`)."""
        found = self._policy.command(argv, None)
        result = await self._transport.run(Command(found), NODES_TIMEOUT)
        return result.stdout if result.returncode == 0 else b""

    async def forever(self) -> None:
        """Connect and serve, again after every break, until cancelled."""
        attempt = 0
        self._keeper.load()
        try:
            async with anyio.create_task_group() as work:  # kept requests: across connections
                while True:
                    if await self.once(work):
                        attempt = 0
                    wait = backoff(attempt, self._rng)
                    attempt += 1
                    log.info("reconnecting in %.1f s", wait)
                    await anyio.sleep(wait)
        finally:
            with anyio.CancelScope(shield=True):
                await self._transport.close()

    async def once(self, work: TaskGroup) -> bool:
        """One connection, served until it ends; whether the gateway welcomed it."""
        session: Session | None = None
        try:
            token, context = self._config.token(), ssl_context(self._config)
            headers = {"Authorization": f"Bearer {token}"}
            bulk = None
            if self._config.bulk_reads:
                headers[m.FEATURES_HEADER] = m.BULK
                bulk = BulkSender(self._config.url, token, context)
            async with connect(
                self._config.url,
                additional_headers=headers,
                ssl=context,
                max_size=HEADER.size + MAX_CONTROL_BODY,
                compression=None,  # file contents and streams: deflate costs more than it saves
                open_timeout=20,
            ) as socket:
                log.info("connected to %s", self._config.url)
                server = Server(self._policy, self._transport)
                streams = Streams(self._policy, self.targets, socket.send, server.open_file, bulk)
                session = Session(socket, server, self.hello(), self._keeper, work, streams)
                await session.run()
        except ssl.SSLCertVerificationError as exc:  # before OSError: it is one
            log.warning(
                "the gateway's certificate was refused (%s): %s; trusted: the system's CAs%s",
                self._config.url, exc.verify_message or exc, _and_ca(self._config),
            )  # fmt: skip
        except InvalidStatus as exc:
            log.warning("the gateway refused the connection: HTTP %d", exc.response.status_code)
        except (OSError, WebSocketException, Closed, ProtocolError, TimeoutError) as exc:
            log.warning("connection to the gateway ended: %s", exc or type(exc).__name__)
        except Exception:  # whatever it was, the agent stays up and dials again
            log.exception("connection to the gateway failed")
        return session is not None and session.epoch is not None


def _and_ca(config: AgentConfig) -> str:
    return f" and {config.ca_file}" if config.ca_file is not None else " (no ca_file)"


def pid_note() -> str:
    return f"hpcgate-agent {__version__} (pid {os.getpid()})"
