"""``<base>+correction`` runs the same on the virtual clock and through the client path.

Same harness as test_parity.py (a real ``PolicyService``, the client's encoding and
decoding, replies pinned to d ticks): the correction hook lives in ``ChunkController``, so
the corrected actions must be bit-identical, and must differ from the base actions.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_parity import A, S, DriftEnv, Loopback, PinnedDelayTransport, flow_policy  # noqa: F401

from chunkwise.clients.sim_client import SimClient
from chunkwise.eval.common import resolve_strategy
from chunkwise.policies.correction.head import CorrectionConfig, CorrectionHead
from chunkwise.runtime.loop import VirtualTicks
from chunkwise.runtime.strategies import get_strategy
from chunkwise.runtime.virtual_clock import VirtualClockExecutor
from chunkwise.scheduling.config import ExecutionConfig
from chunkwise.serving.service import PolicyService


@pytest.fixture(scope="module")
def head_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("corr") / "head"
    CorrectionHead.init(CorrectionConfig(state_dim=S, action_dim=A, hidden=[16], horizon=10), seed=1).save(path)
    return str(path)


@pytest.mark.parametrize("d", [0, 3])
@pytest.mark.parametrize("name", ["latest_only+correction", "delta_expert+correction", "rtc_trained+correction",
                                  "sync+correction"])
def test_corrected_remote_rollout_is_bit_identical(flow_policy, head_path, monkeypatch, name, d):  # noqa: F811
    monkeypatch.setenv("CHUNKWISE_CORRECTION_PATH", head_path)
    base = ExecutionConfig(actions_per_chunk=10, chunk_size_threshold=0.5, n_action_steps=5)
    execution, strat, _ = resolve_strategy(name, base)
    wrap = get_strategy(strat).wrap_policy
    env = DriftEnv()
    local = [VirtualClockExecutor(env, wrap(flow_policy), execution, d).run_episode(seed) for seed in (0, 1)]
    remote = wrap(Loopback(PolicyService(flow_policy)))
    sim = SimClient(env, remote, execution, transport=PinnedDelayTransport(remote, d), clock=VirtualTicks())
    far = [sim.run_episode(seed=seed) for seed in (0, 1)]
    for lo, re in zip(local, far):
        np.testing.assert_array_equal(lo.trace.actions, re.trace.actions)
        np.testing.assert_array_equal(lo.trace.base_actions, re.trace.base_actions)
        moved = ~lo.trace.stall
        assert moved.sum() > 10
        assert not np.allclose(lo.trace.actions[moved], lo.trace.base_actions[moved])  # the head acted
        assert re.info["errors"] == []


def test_correction_without_a_path_names_the_flag(flow_policy, monkeypatch):  # noqa: F811
    monkeypatch.delenv("CHUNKWISE_CORRECTION_PATH", raising=False)
    with pytest.raises(ValueError, match="--correction.path"):
        get_strategy("latest_only+correction").wrap_policy(flow_policy)
