"""RobotClient against a real server: labels, episodes, action context, reconnects."""

import socket
import time

import numpy as np
import pytest

from chunkwise.clients.remote_policy import RemotePolicy
from chunkwise.clients.robot_client import RobotClient
from chunkwise.scheduling.config import ExecutionConfig
from chunkwise.serving.process import ServerProcess


def ClientConfig(**kw) -> ExecutionConfig:  # noqa: N802 - the execution settings of these tests
    return ExecutionConfig(strategy="async", **kw)


def executed(r):
    """(label, action) of every executed step: with pop(now) the label is the step."""
    return [(t, r.trace.actions[t]) for t in range(r.steps) if not r.trace.stall[t]]


def chunks(r) -> int:
    return int((r.trace.delay >= 0).sum())


class FakeRobot:
    """State = [step counter, episode marker, 0...]; records every action it is sent."""

    def __init__(self, dim: int = 8) -> None:
        self.dim, self.k, self.marker = dim, 0, 0.0
        self.sent: list[np.ndarray] = []

    def get_observation(self) -> dict:
        s = np.zeros(self.dim, np.float32)
        s[0], s[1] = self.k, self.marker
        return {"observation.state": s}

    def send_action(self, action: np.ndarray) -> None:
        self.sent.append(np.array(action))
        self.k += 1


@pytest.fixture(scope="module")
def slow_echo():
    # Echo policy with 25 ms model time: at 200 Hz a chunk arrives ~6+ steps late.
    with ServerProcess(["--policy.type=echo", "--policy.chunk_size=20", "--policy.model_ms=25",
                        "--policy.prefix_length=5"], lifetime_s=120) as srv:
        yield srv


def test_executed_actions_carry_their_own_timestep(slow_echo):
    robot = FakeRobot()
    with RemotePolicy(slow_echo.address) as rp:
        rc = RobotClient(robot, rp, ClientConfig(actions_per_chunk=20, chunk_size_threshold=0.5,
                                                 aggregate_fn_name="weighted_average"), fps=200)
        st = rc.run(120)
        rc.close()
    assert st.steps == 120 == len(robot.sent)
    assert st.stall_steps >= 1 and chunks(st) >= 5 and not st.info["errors"]
    for label, action in executed(st):  # echo: action labelled t has t in coordinate 0
        assert action[0] == pytest.approx(label, abs=1e-3)
    # stalls repeat the last executed action (hold position)
    assert np.allclose(robot.sent[0], 0.0)
    # the client estimates the delay and sends the action context the policy asked for
    tr = st.trace
    must_go = tr.request & (tr.queue_len == 0)
    assert must_go.sum() >= 1 and tr.request.sum() > must_go.sum()
    # the delay told to the policy is the largest of the last 3 measured ones (0 at first)
    asked = np.flatnonzero(tr.request)
    assert tr.delay_hint[asked[0]] == 0
    for i, t in enumerate(asked[1:], start=1):
        seen = [tr.delay[s] for s in asked[:i] if tr.delay[s] >= 0 and s + tr.delay[s] <= t][-3:]
        assert tr.delay_hint[t] == max(seen, default=0)


def test_reset_never_executes_previous_episode_actions(slow_echo):
    robot = FakeRobot()
    with RemotePolicy(slow_echo.address) as rp:
        rc = RobotClient(robot, rp, ClientConfig(actions_per_chunk=20, chunk_size_threshold=1.0), fps=200)
        total_stale = 0
        for ep in range(1, 4):
            robot.marker, robot.k = float(ep), 0
            st = rc.run(15)  # ends with a request still in flight (25 ms model)
            total_stale += st.info["stale_episode_replies"]
            assert all(a[1] == ep for _, a in executed(st)), f"episode {ep} executed an old plan"
        time.sleep(0.1)
        rc.close()
    assert st.info["episode_id"] == rp.episode_id == 3


def test_action_context_is_the_queue_head(slow_echo):
    """With prefix_length=5 the echo policy writes the context into rows 0..4 of its chunk:
    the client sent the next 5 queued actions, so those rows equal what it had queued."""
    robot = FakeRobot()
    with RemotePolicy(slow_echo.address) as rp:
        assert rp.metadata.prefix_length == 5
        rc = RobotClient(robot, rp, ClientConfig(actions_per_chunk=20, chunk_size_threshold=1.0,
                                                 aggregate_fn_name="latest_only"), fps=100)
        assert rc.client.controller.prefix_length == 5
        st = rc.run(80)
        rc.close()
    # The queued head at request time = actions labelled t, t+1, ... of the old plan; the
    # echo copies them into labels t, t+1, ... so executed values stay on the diagonal.
    for label, action in executed(st):
        assert action[0] == pytest.approx(label, abs=1e-3)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_reconnects_after_server_restart():
    port = _free_port()
    args = ["--policy.type=echo", "--policy.chunk_size=20", f"--port={port}"]
    srv = ServerProcess(args, lifetime_s=60).start()
    robot = FakeRobot()
    try:
        with RemotePolicy(srv.address, reconnect_timeout_s=30) as rp:
            rc = RobotClient(robot, rp, ClientConfig(actions_per_chunk=20, chunk_size_threshold=0.5), fps=100)
            st1 = rc.run(30)
            assert chunks(st1) > 0
            srv.stop()
            srv = ServerProcess(args, lifetime_s=60).start()  # same port, new process, no sessions
            robot.k = 0
            st2 = rc.run(300)
            rc.close()
            assert rc.client.reconnects >= 1
            assert chunks(st2) > 5, st2.info
            assert max(lb for lb, _ in executed(st2)) > 250  # streaming again long before the end
            for label, action in executed(st2):
                assert action[0] == pytest.approx(label, abs=1e-3)
            # RemotePolicy.predict_chunk also survives a restart
            srv.stop()
            srv = ServerProcess(args, lifetime_s=60).start()
            out = rp.predict_chunk({"observation.state": np.ones((1, 8), np.float32), "task": ["t"]})
            assert out[0, 0, 0] == 1.0
    finally:
        srv.stop()
