import numpy as np
import pytest

from chunkwise.types import (
    OBS_STATE,
    TASK,
    FeatureSpec,
    PolicyMetadata,
    Prefix,
    check_observation,
    stack_observations,
)


def test_metadata_roundtrip():
    md = PolicyMetadata({OBS_STATE: FeatureSpec((39,), "float32")}, 4, 20, 80.0, "act")
    assert PolicyMetadata.from_dict(md.to_dict()) == md


def test_check_observation_names_problem():
    spec = {OBS_STATE: FeatureSpec((3,), "float32")}
    check_observation({OBS_STATE: np.zeros(3, np.float32)}, spec)
    with pytest.raises(ValueError, match="missing required key 'observation.state'"):
        check_observation({}, spec)
    with pytest.raises(ValueError, match="shape"):
        check_observation({OBS_STATE: np.zeros(4, np.float32)}, spec)
    with pytest.raises(ValueError, match="dtype"):
        check_observation({OBS_STATE: np.zeros(3, np.float64)}, spec)
    with pytest.raises(ValueError, match="NaN"):
        check_observation({OBS_STATE: np.array([0, np.nan, 0], np.float32)}, spec)


def test_stack_and_prefix():
    obs = [{OBS_STATE: np.full(3, i, np.float32), TASK: f"t{i}"} for i in range(2)]
    b = stack_observations(obs)
    assert b[OBS_STATE].shape == (2, 3) and b[TASK] == ["t0", "t1"]
    with pytest.raises(ValueError):
        Prefix(np.zeros(3), delay=1)
    with pytest.raises(ValueError):
        Prefix(np.zeros((2, 3)), delay=-1)
