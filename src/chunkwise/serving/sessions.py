"""Per-session state on the server: current episode, last timestep, owner, idle expiry.

A session is opened (or moved to a new episode) by ``Reset(session_id, episode_id)``.
Observation requests must name an open session and its current episode; their
timesteps must increase within an episode:

    Reset(s, e=1)   obs(s, e=1, t=0)  obs(s, e=1, t=12)  Reset(s, e=2)  obs(s, e=2, t=0)
                    ok                 ok                 ok             ok
                                       obs(s, e=1, t=30) after Reset(s, e=2) -> FAILED_PRECONDITION

Ownership: a session belongs to the client that opened it, i.e. its credential (the
token it authenticated with; all token-less clients share one) and its address (host
without port). Requests and Resets of another credential or host get PERMISSION_DENIED.
Within one client, a session is bound to the connection that last used it; another
connection (a reconnect: new port) takes it over only when the old connection has no
call in progress or the session has been quiet for ``takeover_s``, so a streaming robot's
session cannot be reset from elsewhere while it runs. Caps: sessions per connection and
per credential, and in total.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable, NamedTuple

import grpc


class ServingError(Exception):
    """A request failure that maps to one gRPC status code with a readable message."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Owner(NamedTuple):
    credential: str  # "anonymous" without tokens, else the token's name ("token#1", ...)
    host: str  # client address without the port
    connection: str  # full peer string (address:port): one TCP connection


ANONYMOUS = Owner("anonymous", "local", "local")
MAX_SESSION_ID = 256


def _sid(session_id: str) -> str:
    """The id for an error message (ids longer than MAX_SESSION_ID are shortened)."""
    if len(session_id) <= 64:
        return repr(session_id)
    return f"{session_id[:64]!r}... ({len(session_id)} characters)"


@dataclass
class Session:
    session_id: str
    episode_id: int
    owner: Owner = ANONYMOUS
    last_timestep: int = -1
    last_seen: float = 0.0
    requests: int = 0


class SessionTable:
    """Thread-safe table of sessions; sessions idle for ``ttl_s`` are dropped."""

    def __init__(
        self,
        ttl_s: float = 300.0,
        max_sessions: int = 1024,
        *,
        max_per_connection: int | None = None,
        max_per_credential: int | None = None,
        takeover_s: float = 5.0,
        connection_busy: Callable[[str], bool] | None = None,
    ) -> None:
        self.ttl_s = ttl_s
        self.max_sessions = max_sessions
        self.max_per_connection = max_per_connection or max_sessions
        self.max_per_credential = max_per_credential or max_sessions
        self.takeover_s = takeover_s
        self._busy = connection_busy or (lambda connection: False)
        self._sessions: dict[str, Session] = {}
        self._per_connection: dict[str, int] = {}
        self._per_credential: dict[str, int] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._sessions)

    def get(self, session_id: str) -> Session | None:
        with self._lock:
            return self._sessions.get(session_id)

    # ------------------------------------------------------------------ bookkeeping

    def _count(self, owner: Owner, delta: int) -> None:
        for table, key in ((self._per_connection, owner.connection), (self._per_credential, owner.credential)):
            n = table.get(key, 0) + delta
            if n > 0:
                table[key] = n
            else:
                table.pop(key, None)

    def _drop(self, session_id: str) -> None:
        s = self._sessions.pop(session_id, None)
        if s is not None:
            self._count(s.owner, -1)

    def _claim(self, s: Session, owner: Owner, now: float) -> None:
        """Check that ``owner`` may use ``s``; move it to ``owner``'s connection if needed."""
        if s.owner == owner:
            return
        if s.owner.credential != owner.credential or s.owner.host != owner.host:
            raise ServingError(
                grpc.StatusCode.PERMISSION_DENIED,
                f"session {_sid(s.session_id)} belongs to another client (other credential or address); "
                "use your own session id",
            )
        quiet = now - s.last_seen
        if quiet < self.takeover_s and self._busy(s.owner.connection):
            # ABORTED, not FAILED_PRECONDITION: it clears by itself once the old connection's
            # call ends (a robot reconnecting after a drop races its own dying stream), so a
            # client retries it with backoff.
            raise ServingError(
                grpc.StatusCode.ABORTED,
                f"session {_sid(s.session_id)} is in use by another open connection of this client; it can be "
                f"taken over once that connection has no call in progress or after {self.takeover_s:g} s "
                "without requests",
            )
        if self._per_connection.get(owner.connection, 0) >= self.max_per_connection:
            raise self._full("this connection", self.max_per_connection, "max_sessions_per_connection")
        self._count(s.owner, -1)
        s.owner = owner
        self._count(owner, +1)

    @staticmethod
    def _full(who: str, n: int, flag: str) -> ServingError:
        return ServingError(
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            f"{who} already holds {n} sessions (--{flag}); reuse or let idle ones expire",
        )

    # ------------------------------------------------------------------ API

    def reset(self, session_id: str, episode_id: int, owner: Owner = ANONYMOUS) -> Session:
        if not session_id:
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, "session_id must be a non-empty string")
        if len(session_id) > MAX_SESSION_ID:
            raise ServingError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"session_id is {len(session_id)} characters; at most {MAX_SESSION_ID} are accepted",
            )
        now = time.monotonic()
        with self._lock:
            self._expire_locked(now)
            s = self._sessions.get(session_id)
            if s is None:
                if len(self._sessions) >= self.max_sessions:
                    raise ServingError(
                        grpc.StatusCode.RESOURCE_EXHAUSTED,
                        f"server already holds {self.max_sessions} sessions (max_sessions); retry later",
                    )
                if self._per_connection.get(owner.connection, 0) >= self.max_per_connection:
                    raise self._full("this connection", self.max_per_connection, "max_sessions_per_connection")
                if self._per_credential.get(owner.credential, 0) >= self.max_per_credential:
                    raise self._full("this credential", self.max_per_credential, "max_sessions_per_credential")
                s = self._sessions[session_id] = Session(session_id, episode_id, owner=owner, last_seen=now)
                self._count(owner, +1)
            else:
                self._claim(s, owner, now)
                if episode_id < s.episode_id:
                    raise ServingError(
                        grpc.StatusCode.FAILED_PRECONDITION,
                        f"session {_sid(session_id)} is at episode {s.episode_id}; cannot reset back to {episode_id}",
                    )
            s.episode_id, s.last_timestep, s.last_seen = episode_id, -1, now
            return s

    def _checked(self, session_id: str, episode_id: int, timestep: int, owner: Owner, now: float) -> Session:
        s = self._sessions.get(session_id)
        if s is None or now - s.last_seen > self.ttl_s:
            if s is not None:
                self._drop(session_id)
            raise ServingError(
                grpc.StatusCode.NOT_FOUND,
                f"unknown or expired session {_sid(session_id)}; call Reset(session_id, episode_id) first",
            )
        if s.owner != owner:
            self._claim(s, owner, now)
        if episode_id != s.episode_id:
            raise ServingError(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"session {_sid(session_id)} is at episode {s.episode_id}, request is for episode {episode_id}",
            )
        if timestep <= s.last_timestep:
            raise ServingError(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"session {_sid(session_id)}: timestep {timestep} is not after the last one ({s.last_timestep})",
            )
        return s

    def check(self, session_id: str, episode_id: int, timestep: int, owner: Owner = ANONYMOUS) -> None:
        """The checks of ``admit`` without recording anything (run before decoding, so a
        request for a session that is not the client's costs no decoding)."""
        now = time.monotonic()
        s = self._sessions.get(session_id)  # the common case needs no lock: admit() re-checks
        if (s is not None and s.owner == owner and s.episode_id == episode_id and timestep > s.last_timestep
                and now - s.last_seen <= self.ttl_s):
            return
        with self._lock:
            self._checked(session_id, episode_id, timestep, owner, now)

    def admit(self, session_id: str, episode_id: int, timestep: int, owner: Owner = ANONYMOUS) -> None:
        """Check a request against its session and record its timestep."""
        now = time.monotonic()
        with self._lock:
            s = self._checked(session_id, episode_id, timestep, owner, now)
            s.last_timestep, s.last_seen = timestep, now
            s.requests += 1

    def active_count(self, within_s: float = 1.0) -> int:
        """Sessions that sent something in the last ``within_s`` seconds (batching hint)."""
        now = time.monotonic()
        with self._lock:
            return sum(1 for s in self._sessions.values() if now - s.last_seen <= within_s)

    def expire(self) -> int:
        with self._lock:
            return self._expire_locked(time.monotonic())

    def _expire_locked(self, now: float) -> int:
        dead = [k for k, s in self._sessions.items() if now - s.last_seen > self.ttl_s]
        for k in dead:
            self._drop(k)
        return len(dead)
