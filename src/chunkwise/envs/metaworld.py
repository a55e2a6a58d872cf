"""MetaWorld v3 adapter (the embedded default simulator).

One MuJoCo model per adapter, reused across episodes (building it costs ~0.3 s; a reset
costs ~1 ms). Quirks handled here so nothing above ``envs/`` sees them:

* **Goal observable** (MT1 convention): the 39-d state ends with the goal position, which
  MetaWorld's scripted experts read.
* **Seeding**: ``reset(seed)`` reseeds the task's own generator before drawing the object /
  goal positions, so the same seed gives the same initial state and goal.
* **Cameras**: the ``corner*`` cameras are mounted rolled by 180 degrees; their images are
  rotated back upright. Rendering uses one ``mujoco.Renderer`` with shadows, reflections,
  skybox and multisampling off (about 8x faster on CPU EGL; 128x128 in ~15 ms).
  ``reset`` refreshes positions before rendering (MetaWorld moves the goal site after its
  last ``mj_forward``), so an image always shows the state it is paired with.
* **Idle action** ``[0, 0, 0, g]``: zero xyz deltas keep the mocap target where it is and
  ``g`` is the *last gripper command*. A literal ``zeros(4)`` is not a hold: the fingers
  are position actuators (kp=400) so ``g=0`` half-opens them and drops a grasped object
  (pick-place-v3, seed 1: object falls from z=0.077 to 0.022 within 40 stall steps,
  while repeating the last gripper command keeps it at 0.109).
"""

from __future__ import annotations

import atexit
import difflib
import os
import warnings
import weakref
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from chunkwise.envs.base import ChunkEnv, EnvConfig
from chunkwise.types import OBS_STATE, TASK, FeatureSpec, Observation, image_key

# Offscreen rendering without a display; must happen before mujoco is first imported.
os.environ.setdefault("MUJOCO_GL", "egl")

CAMERAS = ("topview", "corner", "corner2", "corner3", "corner4", "behindGripper", "gripperPOV")
_ROTATED_CAMERAS = frozenset({"corner", "corner2", "corner3", "corner4"})
STATE_DIM = 39
ACTION_DIM = 4


def task_names() -> list[str]:
    """The 50 MetaWorld v3 task names (e.g. ``push-v3``)."""
    from metaworld.env_dict import ALL_V3_ENVIRONMENTS

    return list(ALL_V3_ENVIRONMENTS)


def check_task_name(task: str) -> None:
    names = task_names()
    if task not in names:
        close = difflib.get_close_matches(task, names, n=5, cutoff=0.4)
        hint = f" Closest valid names: {', '.join(close)}." if close else ""
        raise ValueError(
            f"unknown MetaWorld task {task!r}.{hint} All {len(names)} v3 tasks: {', '.join(names)}"
        )


@EnvConfig.register_subclass("metaworld")
@dataclass
class MetaWorldEnvConfig(EnvConfig):
    """``--env.type=metaworld --env.task=push-v3 --env.cameras='[corner2]'``."""

    task: str = "push-v3"  # one of the 50 MetaWorld v3 tasks
    fps: float = 80.0  # MetaWorld's render_fps: 5 physics substeps of 2.5 ms
    max_episode_steps: int = 500  # truncate after this many steps (MetaWorld's limit is 500)
    cameras: list[str] = field(default_factory=list)  # e.g. [corner2]; images are rendered upright
    image_size: int = 128  # square images of image_size x image_size pixels
    terminate_on_success: bool = True  # end the episode at the first success
    # each action is held for this many MetaWorld steps (rewards summed, success if any
    # inner step succeeds); max_episode_steps and fps count the outer steps. IBRL
    # (Hu et al. 2024) uses 2 with 100-step episodes: 200 MetaWorld steps per episode.
    action_repeat: int = 1

    def __post_init__(self) -> None:
        check_task_name(self.task)
        if self.fps <= 0:
            raise ValueError(f"env.fps must be positive, got {self.fps}")
        if not 1 <= self.action_repeat <= 50:
            raise ValueError(f"env.action_repeat must be in 1..50, got {self.action_repeat}")
        if not 0 < self.max_episode_steps * self.action_repeat <= 500:
            raise ValueError(
                f"env.max_episode_steps x env.action_repeat must be in 1..500 (MetaWorld's path limit), "
                f"got {self.max_episode_steps} x {self.action_repeat}"
            )
        for cam in self.cameras:
            if cam not in CAMERAS:
                raise ValueError(f"unknown MetaWorld camera {cam!r}; valid cameras: {', '.join(CAMERAS)}")
        if len(set(self.cameras)) != len(self.cameras):
            raise ValueError(f"env.cameras has duplicates: {self.cameras}")
        if not 8 <= self.image_size <= 1024:
            raise ValueError(f"env.image_size must be in 8..1024, got {self.image_size}")

    def make(self) -> "MetaWorldEnv":
        return MetaWorldEnv(self)


class MetaWorldEnv(ChunkEnv):
    """A MetaWorld v3 task in LeRobot observation format (see module docstring)."""

    action_dim = ACTION_DIM

    def __init__(self, cfg: MetaWorldEnvConfig) -> None:
        import mujoco
        from metaworld.env_dict import ALL_V3_ENVIRONMENTS

        self.cfg = cfg
        self.task = cfg.task
        self.action_repeat = int(cfg.action_repeat)
        self.fps = float(cfg.fps) / self.action_repeat
        self.max_episode_steps = int(cfg.max_episode_steps)
        self.cameras = list(cfg.cameras)
        self.image_size = int(cfg.image_size)
        self._mujoco = mujoco

        env = ALL_V3_ENVIRONMENTS[cfg.task]()
        # MT1 setup by hand: goal observable, a fresh seeded goal at every reset.
        env._partially_observable = False
        del env.sawyer_observation_space  # cached_property; recomputed for the 39-d space
        env._set_task_called = True
        env._freeze_rand_vec = False
        env.seeded_rand_vec = True  # draw positions from env.np_random, not np.random
        env.max_path_length = self.max_episode_steps * self.action_repeat
        self._env = env

        self._renderer = None
        if self.cameras:
            model = env.model
            # Must be set before the GL context is created (they size the offscreen buffers).
            model.vis.quality.shadowsize = 0
            model.vis.quality.offsamples = 0
            model.vis.global_.offwidth = max(model.vis.global_.offwidth, self.image_size)
            model.vis.global_.offheight = max(model.vis.global_.offheight, self.image_size)
            self._renderer = mujoco.Renderer(model, self.image_size, self.image_size)
            _track_renderer(self)
            flags = self._renderer.scene.flags
            for flag in (mujoco.mjtRndFlag.mjRND_REFLECTION, mujoco.mjtRndFlag.mjRND_SKYBOX,
                         mujoco.mjtRndFlag.mjRND_SHADOW):
                flags[flag] = 0

        self.observation_spec = {OBS_STATE: FeatureSpec((STATE_DIM,), "float32")}
        for cam in self.cameras:
            self.observation_spec[image_key(cam)] = FeatureSpec((self.image_size, self.image_size, 3), "uint8")

        self._policy = None
        self._raw_obs: np.ndarray | None = None
        self._steps = 0
        self._last_gripper = -1.0
        self._needs_reset = True
        self._closed = False

    # ------------------------------------------------------------------ episode API
    def reset(self, seed: int | None = None) -> Observation:
        """Start an episode; the same ``seed`` gives the same initial state and goal."""
        if seed is not None:
            self._env.seed(int(seed))
        raw, _ = self._env.reset()
        if self._renderer is not None:
            self._forward_keeping_state()
        self._raw_obs = np.asarray(raw, dtype=np.float64)
        self._steps = 0
        self._last_gripper = -1.0  # reset leaves the fingers commanded open
        self._needs_reset = False
        return self._observation()

    def step(self, action: np.ndarray) -> tuple[Observation, float, bool, bool, dict[str, Any]]:
        if self._needs_reset:
            raise RuntimeError(
                f"episode is over ({self._steps} of max_episode_steps={self.max_episode_steps} steps) "
                "or never started: call reset() first"
            )
        a = np.asarray(action, dtype=np.float32).reshape(-1)
        if a.shape != (ACTION_DIM,):
            raise ValueError(f"MetaWorld action must have shape ({ACTION_DIM},), got {np.shape(action)}")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"action contains NaN or inf: {a}")
        a = np.clip(a, -1.0, 1.0)
        reward, success = 0.0, False
        for _ in range(self.action_repeat):
            raw, r, _, _, info = self._env.step(a)
            reward += float(r)
            success = success or bool(info.get("success", 0.0) >= 1.0)
            if success and self.cfg.terminate_on_success:
                break
        self._raw_obs = np.asarray(raw, dtype=np.float64)
        self._steps += 1
        self._last_gripper = float(a[3])
        info = dict(info)
        info["success"] = success
        terminated = success and self.cfg.terminate_on_success
        truncated = (not terminated) and self._steps >= self.max_episode_steps
        # Stepping on after a success is allowed (MetaWorld allows it; oracle look-ahead
        # rollouts rely on it); past the step limit it is not.
        if self._steps >= self.max_episode_steps:
            self._needs_reset = True
        return self._observation(), float(reward), terminated, truncated, info

    def idle_action(self) -> np.ndarray:
        """Hold still: zero xyz deltas, keep the last gripper command (see module doc)."""
        return np.array([0.0, 0.0, 0.0, self._last_gripper], dtype=np.float32)

    @property
    def elapsed_steps(self) -> int:
        return self._steps

    # ------------------------------------------------------------------ observations
    def raw_observation(self) -> np.ndarray:
        """The last raw 39-d MetaWorld observation (float64), as the scripted experts see it."""
        if self._raw_obs is None:
            raise RuntimeError("call reset() first")
        return self._raw_obs.copy()

    def render(self, camera: str) -> np.ndarray:
        """Upright uint8 (image_size, image_size, 3) image from ``camera``."""
        if self._renderer is None:
            raise RuntimeError("no cameras configured; set env.cameras (e.g. ['corner2'])")
        self._renderer.update_scene(self._env.data, camera=camera)
        img = self._renderer.render()
        if camera in _ROTATED_CAMERAS:
            img = img[::-1, ::-1]
        return np.ascontiguousarray(img, dtype=np.uint8)

    def _forward_keeping_state(self) -> None:
        """Recompute positions for rendering without changing where the physics goes next.

        MetaWorld's reset moves the goal site (model.site_pos) after its last mj_forward,
        so without this the first image of an episode shows the goal marker where it was
        before the reset, and differs from a render of the same state after a restore.
        mj_forward also rewrites the solver warm start; setting the saved integration
        state back keeps the trajectory bit-identical to a state-only env's.
        """
        mj, model, data = self._mujoco, self._env.model, self._env.data
        _forward_at(mj, model, data, _integration_state(mj, model, data))

    def _observation(self) -> Observation:
        obs: Observation = {OBS_STATE: self._raw_obs.astype(np.float32)}
        for cam in self.cameras:
            obs[image_key(cam)] = self.render(cam)
        obs[TASK] = self.task
        return obs

    # ------------------------------------------------------------------ oracle support
    def expert_action(self, obs: Observation | np.ndarray | None = None) -> np.ndarray:
        """MetaWorld's scripted expert for this task: float32 (4,) clipped to [-1, 1].

        ``obs`` may be an observation dict, a 39-d state, or None (the last raw observation;
        the float64 original, so results match MetaWorld's own rollouts exactly).
        """
        if self._policy is None:
            from metaworld.policies import ENV_POLICY_MAP

            self._policy = ENV_POLICY_MAP[self.task]()
        if obs is None:
            state = self.raw_observation()
        elif isinstance(obs, dict):
            state = np.asarray(obs[OBS_STATE], dtype=np.float64)
        else:
            state = np.asarray(obs, dtype=np.float64)
        with warnings.catch_warnings():
            # "Constant(s) may be too high": the expert saturates; we clip below anyway.
            warnings.simplefilter("ignore", UserWarning)
            act = self._policy.get_action(state)
        return np.clip(np.asarray(act, dtype=np.float32), -1.0, 1.0)

    def snapshot(self) -> "MetaWorldSnapshot":
        """Capture the full simulator + task state so ``restore`` can rewind bit-exactly."""
        return MetaWorldSnapshot.capture(self)

    def restore(self, snapshot: "MetaWorldSnapshot") -> None:
        if not isinstance(snapshot, MetaWorldSnapshot) or snapshot.owner is not self:
            raise ValueError("snapshot was not taken from this environment")
        snapshot.apply(self)

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
        self._env.close()

    def __del__(self) -> None:  # best effort: GL contexts leak otherwise
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass


# EGL contexts freed during interpreter teardown raise noisy errors; close the renderers of
# envs the caller forgot to close while the GL libraries are still alive. The hook is
# registered after mujoco's EGL module so that (atexit being LIFO) it runs before it.
_LIVE_RENDERING_ENVS: "weakref.WeakSet[MetaWorldEnv]" = weakref.WeakSet()
_atexit_registered = False


def _close_live_renderers() -> None:
    for env in list(_LIVE_RENDERING_ENVS):
        try:
            env.close()
        except Exception:  # noqa: BLE001
            pass


def _track_renderer(env: MetaWorldEnv) -> None:
    global _atexit_registered
    if not _atexit_registered:
        atexit.register(_close_live_renderers)
        _atexit_registered = True
    _LIVE_RENDERING_ENVS.add(env)


_SNAPSHOT_ATTR_TYPES = (np.ndarray, np.generic, int, float, bool, str, type(None))
_MODEL_FIELDS = ("body_pos", "body_quat", "site_pos", "site_quat", "geom_pos", "geom_quat")


def _integration_state(mj: Any, model: Any, data: Any) -> np.ndarray:
    """MuJoCo's full integration state (qpos, qvel, act, warm start, ctrl, mocap, ...)."""
    spec = mj.mjtState.mjSTATE_INTEGRATION
    state = np.empty(mj.mj_stateSize(model, spec), dtype=np.float64)
    mj.mj_getState(model, data, state, spec)
    return state


def _forward_at(mj: Any, model: Any, data: Any, state: np.ndarray) -> None:
    """Set ``state`` and recompute derived quantities (site/body positions for observations
    and renders). mj_forward also rewrites the solver warm start (part of the integration
    state), which would perturb the next step by ~1e-16, so the state is set once more
    afterwards: positions stay valid (qpos unchanged) and the warm start is the saved one."""
    spec = mj.mjtState.mjSTATE_INTEGRATION
    mj.mj_setState(model, data, state, spec)
    mj.mj_forward(model, data)
    mj.mj_setState(model, data, state, spec)


class MetaWorldSnapshot:
    """Everything a MetaWorld episode's future depends on.

    MetaWorld's ``get_env_state`` covers only (qpos, qvel); its ``__getstate__`` copies
    ``__dict__`` shallowly (arrays shared, so later steps mutate the "saved" copy) and
    rebuilds the model. Here: MuJoCo's full integration state (time, qpos, qvel, act,
    warm start, ctrl, mocap pose, ...) via ``mj_getState``, the model fields tasks edit
    at reset / per step (body, site and geom poses), every plain attribute of the task
    object (path length, previous obs, initial positions, ...) copied deeply, the task's
    RNG state, and the adapter's own counters.
    """

    def __init__(self) -> None:
        self.owner: MetaWorldEnv | None = None
        self.physics: np.ndarray | None = None
        self.model_fields: dict[str, np.ndarray] = {}
        self.attrs: dict[str, tuple[Any, Any]] = {}
        self.rng_state: dict[str, Any] | None = None
        self.adapter: dict[str, Any] = {}

    @classmethod
    def capture(cls, env: MetaWorldEnv) -> "MetaWorldSnapshot":
        mj = env._mujoco
        inner = env._env
        snap = cls()
        snap.owner = env
        snap.physics = _integration_state(mj, inner.model, inner.data)
        snap.model_fields = {f: getattr(inner.model, f).copy() for f in _MODEL_FIELDS}
        for name, value in vars(inner).items():
            if isinstance(value, _SNAPSHOT_ATTR_TYPES):
                # Keep the original object too: some attributes are views into MjData
                # (e.g. init_left_pad) and must stay views after a restore.
                saved = value.copy() if isinstance(value, np.ndarray) else value
                snap.attrs[name] = (value, saved)
        snap.rng_state = inner.np_random.bit_generator.state
        snap.adapter = {
            "_raw_obs": None if env._raw_obs is None else env._raw_obs.copy(),
            "_steps": env._steps,
            "_last_gripper": env._last_gripper,
            "_needs_reset": env._needs_reset,
        }
        return snap

    def apply(self, env: MetaWorldEnv) -> None:
        mj = env._mujoco
        inner = env._env
        for f, value in self.model_fields.items():
            getattr(inner.model, f)[...] = value
        for name, (original, saved) in self.attrs.items():
            if isinstance(original, np.ndarray):
                original[...] = saved  # in place: preserves views into MjData
                setattr(inner, name, original)
            else:
                setattr(inner, name, saved)
        inner.np_random.bit_generator.state = self.rng_state
        _forward_at(mj, inner.model, inner.data, self.physics)
        for name, value in self.adapter.items():
            setattr(env, name, value.copy() if isinstance(value, np.ndarray) else value)
