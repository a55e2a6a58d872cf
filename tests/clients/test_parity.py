"""The wall-clock client and the virtual clock run the same rules: with the network
replaced by a transport that answers after exactly d control steps, a remote rollout is
bit-identical to the local one for every strategy.

"Remote" here is the whole client path (``SimClient`` -> ``ChunkClient`` ->
``StreamTransport`` encoding -> a real ``PolicyService`` with its batcher and prefix-mode
views -> reply decoding); only the socket and the clock are replaced.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from chunkwise.clients.realtime import StreamTransport
from chunkwise.clients.remote_policy import metadata_in_mode
from chunkwise.clients.sim_client import SimClient
from chunkwise.envs.base import ChunkEnv
from chunkwise.eval.common import resolve_strategy
from chunkwise.runtime.loop import VirtualTicks
from chunkwise.runtime.strategies import get_strategy
from chunkwise.runtime.virtual_clock import VirtualClockExecutor
from chunkwise.scheduling.config import ExecutionConfig
from chunkwise.serving.service import PolicyService
from chunkwise.types import FeatureSpec
from chunkwise.wire import chunkwise_pb2 as pb
from chunkwise.wire.codec import decode_metadata

S, A = 6, 3


class DriftEnv(ChunkEnv):
    """state_{t+1} = 0.9 state_t + W a_t: every executed action changes all later observations."""

    task, fps, max_episode_steps, action_dim = "drift", 20.0, 40, A
    observation_spec = {"observation.state": FeatureSpec((S,), "float32")}
    _W = np.linspace(-1, 1, S * A, dtype=np.float32).reshape(S, A)

    def reset(self, seed=None):
        self.x = np.random.default_rng(seed).normal(size=S).astype(np.float32)
        self.t = 0
        return self._obs()

    def _obs(self):
        return {"observation.state": self.x.copy(), "task": self.task}

    def step(self, action):
        self.x = (0.9 * self.x + self._W @ np.asarray(action, np.float32)).astype(np.float32)
        self.t += 1
        return self._obs(), float(-np.abs(self.x).sum()), False, self.t >= self.max_episode_steps, {"success": False}

    def idle_action(self):
        return np.zeros(A, np.float32)


class _Context:
    def time_remaining(self):
        return None

    def is_active(self):
        return True

    def abort(self, code, message):
        raise AssertionError(f"server aborted: {code} {message}")


class Loopback:
    """What ``RemotePolicy`` is to the client, with a PolicyService in this process."""

    def __init__(self, service: PolicyService, md=None, mode: str = "") -> None:
        self.service = service
        self.metadata = md or decode_metadata(service.GetMetadata(pb.MetadataRequest(), _Context()))
        self.prefix_mode = mode
        self.session_id, self.episode_id, self.address = "parity", 0, "in-process"

    def with_prefix_mode(self, mode: str) -> "Loopback":
        return Loopback(self.service, metadata_in_mode(self.metadata, mode), mode)


class PinnedDelayTransport(StreamTransport):
    """StreamTransport whose wire is a PolicyService call; replies come back d ticks later."""

    def __init__(self, remote: Loopback, d: int) -> None:
        super().__init__(remote)  # type: ignore[arg-type]
        self.d = d
        self._held: list[tuple[int, pb.ChunkReply]] = []

    def start_episode(self, seed: int) -> None:
        self.remote.episode_id += 1
        self.remote.service.Reset(pb.ResetRequest(session_id="parity", episode_id=self.remote.episode_id), _Context())
        self.remote.service.policy.reset()  # as the local executor does per episode
        self._new_episode(self.remote.episode_id)
        self._held = []

    def _submit(self, request, msg) -> None:
        reply = self.remote.service.Infer(msg.SerializeToString(), _Context())
        self._held.append((request.timestep + self.d, reply))

    def poll(self, now: int):
        for _at, reply in [h for h in self._held if h[0] <= now]:
            self._inbox.put((reply, time.monotonic()))
        self._held = [h for h in self._held if h[0] > now]
        return super().poll(now)


@pytest.fixture(scope="module")
def flow_policy():
    import torch

    from chunkwise.policies.common.trainable import DatasetInfo
    from chunkwise.policies.flow.config import FlowConfig

    torch.manual_seed(0)
    torch.set_num_threads(1)
    info = DatasetInfo(
        observation_spec={"observation.state": FeatureSpec((S,), "float32")}, action_dim=A, fps=20.0,
        stats={"observation.state": {"mean": np.zeros(S, np.float32), "std": np.ones(S, np.float32)},
               "action": {"mean": np.zeros(A, np.float32), "std": np.full(A, 0.3, np.float32)}},
        task="drift",
    )
    cfg = FlowConfig(chunk_size=10, n_action_steps=5, dim_model=32, n_heads=2, n_blocks=1, n_future_tokens=2,
                     delta_n_blocks=1, rtc_max_delay=6, rtc_training=True, delta_expert=True,
                     action_context_length=3)
    return cfg.make_policy(info)


STRATEGIES = ["sync", "latest_only", "weighted_average", "average", "temporal_ensemble",
              "rtc_guided", "rtc_trained", "delta_expert"]


@pytest.mark.parametrize("d", [0, 3])
@pytest.mark.parametrize("name", STRATEGIES)
def test_remote_rollout_is_bit_identical_to_the_virtual_clock(flow_policy, name, d):
    base = ExecutionConfig(actions_per_chunk=10, chunk_size_threshold=0.5, n_action_steps=5,
                           temporal_ensemble_m=0.1)
    execution, strat, _ = resolve_strategy(name, base)
    wrap = get_strategy(strat).wrap_policy or (lambda p: p)
    env = DriftEnv()
    local = [VirtualClockExecutor(env, wrap(flow_policy), execution, d).run_episode(seed) for seed in (0, 1)]

    remote = wrap(Loopback(PolicyService(flow_policy)))
    sim = SimClient(env, remote, execution, transport=PinnedDelayTransport(remote, d), clock=VirtualTicks())
    far = [sim.run_episode(seed=seed) for seed in (0, 1)]
    for lo, re in zip(local, far):
        assert lo.trace.actions.shape == re.trace.actions.shape == (40, A)
        np.testing.assert_array_equal(lo.trace.actions, re.trace.actions)
        for field in ("stall", "seam", "queue_len", "request", "delay", "chunk"):
            np.testing.assert_array_equal(getattr(lo.trace, field), getattr(re.trace, field), err_msg=field)
        # the remote client cannot know d in advance; once a chunk came back its estimate
        # equals it (only the first request, on an empty queue, is told 0 instead of d)
        told = lo.trace.request & (lo.trace.queue_len > 0)
        np.testing.assert_array_equal(lo.trace.delay_hint[told], re.trace.delay_hint[told])
        assert re.info["errors"] == [] and lo.inferences == re.inferences > 3


def test_prefix_modes_reach_the_served_policy(flow_policy):
    """A served flow checkpoint offers its prefix modes; asking for one sends the prefix."""
    service = PolicyService(flow_policy)
    md = Loopback(service).metadata
    assert md.prefix_length is None and dict(md.prefix_modes) == {"rtc_guided": 0, "rtc_trained": 0, "delta_expert": 3}
    assert get_strategy("delta_expert").wrap_policy(Loopback(service)).metadata.prefix_length == 3
