"""Fast subset of `chunkwise bench fuzz`: 2,000 fuzzed requests against real server
processes (echo with a prefix, and the MLP) -> no crash, hang, OK with non-finite
actions, OK for an invalid request, or traceback in the server log."""

from chunkwise.serving.fuzz import FuzzConfig, certainly_invalid, run_fuzz
from chunkwise.wire.codec import encode_request

import numpy as np


def test_fuzzed_requests_never_crash_hang_or_return_non_finite():
    results = run_fuzz(FuzzConfig(n_requests=2000, seed=0, timeout_s=20))
    for r in results:
        assert r.passed, r.summary() + "\n" + "\n".join(r.examples)
        assert r.ok > 100 and r.statuses.get("INVALID_ARGUMENT", 0) > 100, r.summary()
        assert r.valid_failed == 0, r.summary() + "\n" + "\n".join(r.examples)
    mlp = [r for r in results if r.policy == "mlp"][0]
    assert mlp.statuses.get("INTERNAL", 0) > 0, mlp.summary()  # huge states: refused, not sent


def test_the_fuzz_oracle():
    def req(**kw):
        obs = {"observation.state": kw.pop("state", np.zeros(8, np.float32)), "task": "t"}
        return encode_request(obs, session_id="s", episode_id=0, timestep=1, **kw).SerializeToString()

    assert not certainly_invalid(req())
    assert not certainly_invalid(req(action_context=np.zeros((5, 4), np.float32)))
    assert certainly_invalid(req(state=np.full(8, np.nan, np.float32)))
    assert certainly_invalid(req(state=np.zeros(8, np.float64)))
    assert certainly_invalid(req(action_context=np.zeros((5, 3), np.float32)))
    assert certainly_invalid(req(prefix_mode="x"))
    assert certainly_invalid(b"\xff\xff")
