"""Signed-in browsers: the token each one pasted, kept in the gateway's memory.

The cookie holds only a random session id (HttpOnly, SameSite=Strict, Secure over https);
the token stays on the server and is checked again on every request, so revoking it ends
the session. Sessions live in this process: a restart signs everyone out. Each session has
its own CSRF token, which every state-changing request must carry.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass, field

COOKIE = "hpcgate_session"
#: Over https the cookies carry the ``__Host-`` prefix: the browser then takes them only
#: host-only, Secure and on path ``/``, so no other host under the same parent domain (an
#: app's own origin, ``[ui] apps_domain``) can set or shadow them.
HOST_PREFIX = "__Host-"


def cookie_place(name: str, path: str, secure: bool) -> tuple[str, str]:
    """The name and path a cookie of the web interface has: ``__Host-`` and ``/`` over
    https, else ``name`` on ``path``."""
    return (HOST_PREFIX + name, "/") if secure else (name, path)


#: A session unused this long is gone; one is never kept longer than MAX_AGE.
IDLE_SECONDS = 8 * 3600
MAX_AGE = 24 * 3600
#: At most this many sessions at once; past it the least recently used is dropped.
MAX_SESSIONS = 10_000


@dataclass
class Session:
    token: str = field(repr=False)
    user: str
    admin: bool = False  # shows the Admin link; each admin page checks the token's scope
    #: Signed in with a provider (webui/oidc.py): its name and the refresh token that
    #: renews ``token`` when it expires (both stay here, never in the browser).
    provider: str | None = None
    refresh: str | None = field(default=None, repr=False)
    #: One renewal at a time: a provider may allow a refresh token a single use.
    renewal: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False, compare=False)
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32), repr=False)
    created: float = field(default_factory=time.monotonic)
    seen: float = field(default_factory=time.monotonic)

    def csrf_matches(self, presented: str | None) -> bool:
        # As bytes: compare_digest refuses a str that is not ASCII (a 500, not a 403).
        return presented is not None and hmac.compare_digest(presented.encode(), self.csrf.encode())


def _key(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


class Sessions:
    """The live sessions, by the digest of their id (a lookup reveals nothing by timing)."""

    def __init__(self) -> None:
        self._by_key: dict[str, Session] = {}

    def open(
        self,
        token: str,
        user: str,
        admin: bool = False,
        provider: str | None = None,
        refresh: str | None = None,
    ) -> tuple[str, Session]:
        """A new session and the id its cookie carries."""
        self._sweep()
        while len(self._by_key) >= MAX_SESSIONS:
            oldest = min(self._by_key, key=lambda k: self._by_key[k].seen)
            del self._by_key[oldest]
        session_id = secrets.token_urlsafe(32)
        session = Session(token, user, admin, provider, refresh)
        self._by_key[_key(session_id)] = session
        return session_id, session

    def get(self, session_id: str | None) -> Session | None:
        if not session_id or len(session_id) > 128:
            return None
        session = self._by_key.get(_key(session_id))
        now = time.monotonic()
        if session is None or _expired(session, now):
            self.close(session_id)
            return None
        session.seen = now
        return session

    def close(self, session_id: str | None) -> None:
        if session_id:
            self._by_key.pop(_key(session_id), None)

    def _sweep(self) -> None:
        now = time.monotonic()
        for key in [k for k, s in self._by_key.items() if _expired(s, now)]:
            del self._by_key[key]


def _expired(session: Session, now: float) -> bool:
    return now - session.seen > IDLE_SECONDS or now - session.created > MAX_AGE
