"""Per-session state on the server: current episode, last timestep, idle expiry.

A session is opened (or moved to a new episode) by ``Reset(session_id, episode_id)``.
Observation requests must name an open session and its current episode; their
timesteps must increase within an episode:

    Reset(s, e=1)   obs(s, e=1, t=0)  obs(s, e=1, t=12)  Reset(s, e=2)  obs(s, e=2, t=0)
                    ok                 ok                 ok             ok
                                       obs(s, e=1, t=30) after Reset(s, e=2) -> FAILED_PRECONDITION
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import grpc


class ServingError(Exception):
    """A request failure that maps to one gRPC status code with a readable message."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class Session:
    session_id: str
    episode_id: int
    last_timestep: int = -1
    last_seen: float = 0.0
    requests: int = 0


class SessionTable:
    """Thread-safe table of sessions; sessions idle for ``ttl_s`` are dropped."""

    def __init__(self, ttl_s: float = 300.0, max_sessions: int = 1024) -> None:
        self.ttl_s = ttl_s
        self.max_sessions = max_sessions
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._sessions)

    def reset(self, session_id: str, episode_id: int) -> Session:
        if not session_id:
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, "session_id must be a non-empty string")
        if len(session_id) > 256:
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, "session_id longer than 256 characters")
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
                s = self._sessions[session_id] = Session(session_id, episode_id, last_seen=now)
            elif episode_id < s.episode_id:
                raise ServingError(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    f"session {session_id!r} is at episode {s.episode_id}; cannot reset back to {episode_id}",
                )
            s.episode_id, s.last_timestep, s.last_seen = episode_id, -1, now
            return s

    def admit(self, session_id: str, episode_id: int, timestep: int) -> None:
        """Check a request against its session and record its timestep."""
        now = time.monotonic()
        with self._lock:
            s = self._sessions.get(session_id)
            if s is None or now - s.last_seen > self.ttl_s:
                self._sessions.pop(session_id, None)
                raise ServingError(
                    grpc.StatusCode.NOT_FOUND,
                    f"unknown or expired session {session_id!r}; call Reset(session_id, episode_id) first",
                )
            if episode_id != s.episode_id:
                raise ServingError(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    f"session {session_id!r} is at episode {s.episode_id}, request is for episode {episode_id}",
                )
            if timestep <= s.last_timestep:
                raise ServingError(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    f"session {session_id!r}: timestep {timestep} is not after the last one ({s.last_timestep})",
                )
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
            del self._sessions[k]
        return len(dead)
