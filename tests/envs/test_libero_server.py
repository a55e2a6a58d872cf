"""LIBERO through a real ``chunkwise serve`` process (skipped without the ``.[libero]`` extra).

Kept short: a state-only env and a 20-step SimClient episode against a served test MLP
with LIBERO's 8-d state and 7-d action.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("libero.libero", reason="LIBERO is an optional extra: pip install -e '.[libero]'")

from chunkwise.clients.remote_policy import RemotePolicy  # noqa: E402
from chunkwise.clients.sim_client import SimClient  # noqa: E402
from chunkwise.envs import LiberoEnvConfig, make_env  # noqa: E402
from chunkwise.scheduling.config import ExecutionConfig  # noqa: E402
from chunkwise.serving.process import ServerProcess  # noqa: E402


def test_sim_client_libero_episode_against_a_real_server():
    env = make_env(LiberoEnvConfig(task="libero_object", task_id=0, cameras=[]))
    try:
        with ServerProcess(["--policy.type=mlp", "--policy.state_dim=8", "--policy.action_dim=7",
                            "--policy.chunk_size=10", "--policy.fps=20"], lifetime_s=120) as srv:
            with RemotePolicy(srv.address) as rp:
                assert rp.metadata.action_dim == 7
                sim = SimClient(env, rp, ExecutionConfig(actions_per_chunk=10, chunk_size_threshold=0.5,
                                                         aggregate_fn_name="weighted_average"), time_scale=4.0)
                try:
                    st = sim.run_episode(seed=3, max_steps=20)
                finally:
                    sim.close()
    finally:
        env.close()
    assert st.steps == 20 and not st.info["errors"], st.info
    assert env.init_state_index == 3
    tr = st.trace
    arrived = tr.delay >= 0
    assert arrived.sum() >= 2
    assert (tr.chunk[~tr.stall] < arrived.sum()).all()


def test_object_state_appends_goal_object_and_target_poses():
    env = make_env(LiberoEnvConfig(task="libero_object", task_id=0, cameras=[], object_state=True))
    try:
        obs = env.reset(seed=1)
        s = obs["observation.state"]
        assert s.shape == (18,) and s.dtype == np.float32
        assert env.observation_spec["observation.state"].shape == (18,)
        data = env._inner.sim.data
        soup = data.body_xpos[env._inner.obj_body_id["alphabet_soup_1"]]
        basket = data.body_xpos[env._inner.obj_body_id["basket_1"]]
        np.testing.assert_allclose(s[8:11], soup, atol=2e-3)
        np.testing.assert_allclose(np.linalg.norm(s[11:15]), 1.0, atol=1e-5)
        np.testing.assert_allclose(s[15:18], basket, atol=2e-3)
        obs2, *_ = env.step(env.idle_action())
        assert obs2["observation.state"].shape == (18,)
    finally:
        env.close()
