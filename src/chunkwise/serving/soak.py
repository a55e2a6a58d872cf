"""Soak test: N concurrent streaming sessions against an echo server, every reply checked.

Each client thread owns one session and one bidirectional stream and keeps
``pipeline`` requests in flight. Request j of client c carries timestep t_j (increasing
by 1..3) and state ``[t_j, c, j, 0, ...]``; the echo policy answers
``actions[i] = state[:A] + (i, 0, 0, ...)``, so every reply proves which session and
which request it answers. Counted: lost (sent, never answered), duplicated (answered
twice), misdelivered (another session's data), non-monotone timesteps, error replies.
"""

from __future__ import annotations

import queue as queue_mod
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from chunkwise.clients.remote_policy import RemotePolicy
from chunkwise.types import OBS_STATE
from chunkwise.wire.codec import decode_tensor, encode_request

_CLOSE = object()


@dataclass
class SoakResult:
    clients: int
    seconds: float
    sent: int = 0
    received: int = 0
    lost: int = 0
    duplicated: int = 0
    misdelivered: int = 0
    non_monotone: int = 0
    errors: int = 0
    batch_sizes: dict[int, int] = field(default_factory=dict)
    error_messages: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.sent > 0 and not (
            self.lost or self.duplicated or self.misdelivered or self.non_monotone or self.errors
        )

    def summary(self) -> str:
        return (
            f"soak: {self.clients} clients x {self.seconds:.0f} s: sent={self.sent} received={self.received} "
            f"lost={self.lost} duplicated={self.duplicated} misdelivered={self.misdelivered} "
            f"non_monotone={self.non_monotone} errors={self.errors} "
            f"requests/s={self.received / max(self.seconds, 1e-9):.0f} batch sizes={self.batch_sizes}"
        )


def _client(address: str, c: int, seconds: float, state_dim: int, pipeline: int, out: SoakResult, lock: threading.Lock) -> None:
    rng = np.random.default_rng(c)
    remote = RemotePolicy(address, session_id=f"soak-{c}")
    remote.ensure_session(remote.session_id)
    requests: queue_mod.SimpleQueue = queue_mod.SimpleQueue()

    def gen():  # noqa: ANN202
        while (item := requests.get()) is not _CLOSE:
            yield item

    replies = remote.open_stream(gen())
    expected: dict[int, int] = {}  # request_id -> timestep
    seen: set[int] = set()
    sent = received = dup = mis = nonmono = errs = 0
    msgs: list[str] = []
    batch: dict[int, int] = {}
    t, j, last_t = 0, 0, -1
    t_end = time.monotonic() + seconds

    def send() -> None:
        nonlocal t, j, sent
        j += 1
        t += int(rng.integers(1, 4))
        state = np.zeros(state_dim, np.float32)
        state[:3] = (t, c, j)
        expected[j] = t
        requests.put(encode_request({OBS_STATE: state, "task": "soak"}, session_id=remote.session_id,
                                    episode_id=remote.episode_id, timestep=t, request_id=j))
        sent += 1

    try:
        for _ in range(pipeline):
            send()
        for reply in replies:
            received += 1
            rid = reply.request_id
            if rid in seen:
                dup += 1
            seen.add(rid)
            if reply.error.code != 0:
                errs += 1
                msgs.append(reply.error.message)
            else:
                a = decode_tensor(reply.actions)
                if (reply.session_id != remote.session_id or a[0, 1] != c or a[0, 2] != rid
                        or reply.first_timestep != expected.get(rid) or a[0, 0] != reply.first_timestep):
                    mis += 1
                if reply.first_timestep <= last_t:
                    nonmono += 1
                last_t = reply.first_timestep
                batch[reply.timings.batch_size] = batch.get(reply.timings.batch_size, 0) + 1
            if time.monotonic() < t_end:
                send()
            elif received >= sent:
                break
    except Exception as e:  # noqa: BLE001 - counted, reported
        errs += 1
        msgs.append(f"{type(e).__name__}: {e}")
    finally:
        requests.put(_CLOSE)
        remote.close()
    with lock:
        out.sent += sent
        out.received += received
        out.lost += max(0, sent - len(seen))
        out.duplicated += dup
        out.misdelivered += mis
        out.non_monotone += nonmono
        out.errors += errs
        out.error_messages += msgs[:3]
        for k, v in batch.items():
            out.batch_sizes[k] = out.batch_sizes.get(k, 0) + v


def run_soak(address: str, n_clients: int = 32, seconds: float = 5.0, state_dim: int = 8, pipeline: int = 2) -> SoakResult:
    """Needs a server running ``--policy.type=echo`` with ``state_dim >= 3`` actions."""
    out = SoakResult(clients=n_clients, seconds=seconds)
    lock = threading.Lock()
    threads = [
        threading.Thread(target=_client, args=(address, c, seconds, state_dim, pipeline, out, lock), daemon=True)
        for c in range(n_clients)
    ]
    t0 = time.monotonic()
    for th in threads:
        th.start()
    for th in threads:
        th.join(seconds + 60)
    out.seconds = time.monotonic() - t0
    out.batch_sizes = dict(sorted(out.batch_sizes.items()))
    return out
