"""Prefix branches: demonstrations of *continuing after a stale plan*.

Why: a prefix-aware policy (training-time RTC, the delta expert) is given the queued
actions that will run while it computes and must plan what comes after them. In plain
demonstrations the next actions are always the expert's own, so the prefix carries no
information the observation does not already hold, and the model learns to ignore it.
Under delay the queued prefix comes from a plan made k steps earlier and is *not* what
the expert would do now; the right continuation is the expert's plan from the state the
robot reaches after that prefix. The scripted oracle measures this (docs/async.md:
``oracle_prefix`` keeps 100 % at d = 8 where ``latest_only`` falls to 4 %), so the data
can be generated the same way.

How (per demonstration seed): the scripted oracle runs the episode async (``latest_only``,
``chunk_size`` actions per chunk, trigger ``chunk_size_threshold``, delay d drawn from
``delays`` per request) on the virtual clock. At every request (obs_t, queued plan q, d),
a branch is rolled out in a snapshot of the env and recorded as its own episode:

    branch frame   0      1    ..  d-1    d        ..  length-1
    action         q[0]   q[1] ..  q[d-1] expert   ..  expert        (idle where q ran dry)
    prefix_length  d      d-1  ..  1      0        ..  0

``prefix_length`` (a per-frame int column) says how many of the frame's next actions are
forced, not the expert's choice; training must give those as the prefix and put no loss on
them (``FlowPolicy.compute_loss``). Frames with ``prefix_length = 0`` are ordinary expert
frames from states slightly off the demonstrations (DART-like).

Cameras (``--env.cameras``): the look-ahead rollouts run without rendering (``expert_rollout``
switches them off), so a recorded branch is replayed once more in a snapshot, rendering
every camera at each frame's state before its action (frame 0 = the state at the request:
the same render as the async run's observation there). The replay checks that it passes
through the recorded states bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Sequence

import numpy as np

from chunkwise.policies.scripted.oracle import OraclePolicy, expert_rollout, frozen_steps
from chunkwise.types import (ACTION, OBS_STATE, PREFIX_LENGTH, ObservationBatch, PolicyMetadata, Prefix,
                             image_key)


@dataclass
class BranchConfig:
    """``--branches.delays='[1,2,4,8]'`` turns branch recording on (empty = off)."""

    delays: list[int] = field(default_factory=list)  # d drawn uniformly from these per request
    chunk_size: int = 20  # actions per oracle chunk (= the policy's actions_per_chunk)
    chunk_size_threshold: float = 0.5  # async trigger, as in eval
    length: int = 20  # frames per branch (the prefix included)
    max_steps: int = 150  # cap on the async run: a failing run would otherwise flood the data
    # DAgger for the prefix (Ross et al. 2011): the queued plans come from this checkpoint run
    # with ``policy_strategy`` instead of the plain oracle, so the branches start from the stale
    # plans the learned policy itself leaves in the queue; the continuation is still the expert's
    policy_path: str = ""
    policy_strategy: str = "delta_expert"

    def __post_init__(self) -> None:
        if any(int(d) != d or d < 1 for d in self.delays):
            raise ValueError(f"branches.delays must be integers >= 1, got {self.delays}")
        if self.chunk_size <= 0:
            raise ValueError(f"branches.chunk_size must be positive, got {self.chunk_size}")
        if not 0.0 <= self.chunk_size_threshold <= 1.0:
            raise ValueError(f"branches.chunk_size_threshold must be in [0, 1], got {self.chunk_size_threshold}")
        if self.max_steps <= 0:
            raise ValueError(f"branches.max_steps must be positive, got {self.max_steps}")
        if self.policy_strategy and "+" in self.policy_strategy:
            raise ValueError(f"branches.policy_strategy must be a plain strategy, got {self.policy_strategy!r}")
        if self.delays and self.length <= max(self.delays):
            raise ValueError(f"branches.length={self.length} must exceed the largest delay {max(self.delays)} "
                             "(a branch needs expert actions after its prefix)")

    @property
    def enabled(self) -> bool:
        return bool(self.delays)


class _BranchRecorder:
    """Policy for the executor: executes the plain oracle's chunk (a stale plan, like a
    prefix-unaware model's), and records the prefix branch of every request."""

    def __init__(self, env: Any, cfg: BranchConfig) -> None:
        self.env = env
        self.cfg = cfg
        self.oracle = OraclePolicy(env, chunk_size=cfg.chunk_size)
        meta = self.oracle.metadata
        self._metadata = replace(meta, prefix_length=0)
        self.branches: list[dict[str, np.ndarray]] = []
        self.planner = _load_planner(cfg) if cfg.policy_path else None

    @property
    def metadata(self) -> PolicyMetadata:
        return self._metadata

    def reset(self) -> None:
        if self.planner is not None and hasattr(self.planner, "reset"):
            self.planner.reset()

    def predict_chunk(self, obs_batch: ObservationBatch,
                      prefix: Sequence[Prefix | None] | None = None) -> np.ndarray:
        if self.planner is None:
            chunk = self.oracle.predict_chunk(obs_batch)
        else:  # the learned plan, given the prefix it will be deployed with
            chunk = np.asarray(self.planner.predict_chunk(obs_batch, prefix), dtype=np.float32)[:, :self.cfg.chunk_size]
        p = prefix[0] if prefix else None
        if p is not None and p.delay > 0:
            self.branches.append(self._branch(p))
        return chunk

    def _branch(self, p: Prefix) -> dict[str, np.ndarray]:
        d = p.delay
        r = expert_rollout(self.env, self.cfg.length, frozen_steps(p, self.env.action_dim), record=True,
                           stop_on_done=True)
        n = len(r.actions)
        dones = r.dones.copy()
        dones[-1] = True  # a branch is its own (short) episode
        cameras = list(getattr(self.env, "cameras", None) or [])
        return {
            OBS_STATE: r.states,
            **(branch_images(self.env, r.actions, r.states, cameras) if cameras else {}),
            ACTION: r.actions,
            "next.reward": r.rewards,
            "next.success": r.successes,
            "next.done": dones,
            PREFIX_LENGTH: np.maximum(d - np.arange(n), 0).astype(np.int64),
        }


def _load_planner(cfg: BranchConfig) -> Any:
    """The checkpoint at ``cfg.policy_path`` wrapped for ``cfg.policy_strategy``."""
    from chunkwise.policies import load
    from chunkwise.runtime.strategies import get_strategy

    policy = load(cfg.policy_path)
    if policy.metadata.chunk_size < cfg.chunk_size:
        raise ValueError(f"branches.chunk_size={cfg.chunk_size} > chunk_size={policy.metadata.chunk_size} "
                         f"of {cfg.policy_path}")
    wrap = get_strategy(cfg.policy_strategy).wrap_policy
    return wrap(policy) if wrap is not None else policy


def branch_images(env: Any, actions: np.ndarray, states: np.ndarray,
                  cameras: Sequence[str]) -> dict[str, np.ndarray]:
    """Replay ``actions`` from the env's current state in a snapshot and return, per camera,
    the (n, H, W, 3) uint8 images of the n frames (frame i = before action i); the env is
    rewound afterwards. ``states`` (n, S) are the frames' recorded states: a replay that
    leaves them raises RuntimeError rather than pairing images with the wrong states."""
    n = len(actions)
    if len(states) != n:
        raise ValueError(f"branch has {n} actions but {len(states)} states")
    images: dict[str, list[np.ndarray]] = {c: [] for c in cameras}
    snap = env.snapshot()
    env.cameras = []  # step() need not render: each frame is rendered once, below
    try:
        for i in range(n):
            state = np.asarray(env.raw_observation(), dtype=np.float32)
            if not np.array_equal(state, states[i]):
                raise RuntimeError(f"branch replay left the recorded states at frame {i} of {n} "
                                   f"(max |diff| {np.abs(state - states[i]).max():.3g}); the env's "
                                   "snapshot/restore or expert is not deterministic")
            for c in cameras:
                images[c].append(env.render(c))
            if i + 1 < n:
                env.step(actions[i])
    finally:
        env.cameras = list(cameras)
        env.restore(snap)
    return {image_key(c): np.stack(v) for c, v in images.items()}


def record_branches(env: Any, seed: int, cfg: BranchConfig) -> list[dict[str, np.ndarray]]:
    """Run episode ``seed`` async with the oracle and return its prefix branches (frames
    as in ``collect.run_expert_episode`` plus ``prefix_length``)."""
    from chunkwise.runtime import ExecutionConfig, VirtualClockExecutor
    from chunkwise.scheduling.delay import SampledDelay

    cameras = list(getattr(env, "cameras", None) or [])
    recorded = {OBS_STATE} | {image_key(c) for c in cameras}
    other = sorted(set(getattr(env, "observation_spec", {})) - recorded)
    if other:
        raise ValueError(f"prefix branches record {OBS_STATE} and the camera images only; this env "
                         f"also observes {other}")
    recorder = _BranchRecorder(env, cfg)
    exe_cfg = ExecutionConfig(strategy="async", aggregate_fn_name="latest_only", actions_per_chunk=cfg.chunk_size,
                              chunk_size_threshold=cfg.chunk_size_threshold, max_steps=cfg.max_steps,
                              record_trace=False)
    VirtualClockExecutor(env, recorder, exe_cfg, delay=SampledDelay(list(cfg.delays))).run_episode(seed)
    return recorder.branches
