"""``chunkwise collect``: scripted-expert demonstrations as a LeRobot v3.0 dataset.

    chunkwise collect --env.type=metaworld --env.task=push-v3 --n_episodes=50 \\
        --output_dir=data/push-v3 [--seed=0 --keep_failed=false --overwrite=false \\
        --env.cameras='[corner2]' --max_attempts=...] [--branches.delays='[1,2,3,4,5,6,7,8]'] \\
        [--dataset.video=true --dataset.vcodec=libsvtav1|h264 --dataset.crf=30 --dataset.g=2]

Cameras are PNG frames in the parquet by default; ``--dataset.video=true`` stores them as
MP4 video the way LeRobot does by default (AV1 with LeRobot's encoder settings).

Attempt k resets the env with seed ``seed + k``. Unless ``keep_failed``, only successful
episodes are kept and attempts continue until ``n_episodes`` succeed (at most
``max_attempts``, default 2·n + 20, then a clear error). Per frame t::

    observation.* = obs_t      action = a_t (expert, clipped to [-1, 1], float32)
    next.reward = r_{t+1}      next.success = success after a_t      next.done = last frame

Episodes end at the first success (the env's ``terminate_on_success``): evaluation stops
there too, and what MetaWorld's experts do after success is unspecified (some keep
pushing and undo it), so post-success frames would teach nothing useful.

With ``--branches.delays`` each kept episode is followed by its *prefix branches*
(``chunkwise.data.branches``): short episodes that start with a stale plan's queued
actions and continue with the expert, marked by a per-frame ``prefix_length`` column
(0 on the demonstrations). Prefix-aware policies train on them; others ignore the column.
With ``--env.cameras`` every branch frame carries the images rendered at its own state.

The dataset is written into a hidden temp dir next to ``output_dir`` and renamed into
place at the end; an interrupted run leaves no directory that looks complete.
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from chunkwise.data import format as fmt
from chunkwise.data.branches import PREFIX_LENGTH, BranchConfig, record_branches
from chunkwise.data.writer import LeRobotV3Writer
from chunkwise.envs import EnvConfig, MetaWorldEnvConfig, make_env
from chunkwise.types import ACTION


@dataclass
class DatasetOptions:
    """How the dataset stores cameras (``--dataset.*``)."""

    video: bool = False  # cameras as MP4 video (LeRobot's default format) instead of PNG in the parquet
    vcodec: str = "libsvtav1"  # libsvtav1 (AV1, as LeRobot) or h264
    crf: int = 30  # quality: lower is better and larger
    g: int = 2  # keyframe every g frames (random access decodes at most g frames)

    def __post_init__(self) -> None:
        if self.g <= 0 or self.crf < 0:
            raise ValueError(f"--dataset.g must be positive and --dataset.crf >= 0, got {self.g}, {self.crf}")
        self.encoder_options()  # an unknown --dataset.vcodec fails here, before any rollout

    def encoder_options(self) -> Any:
        from chunkwise.data.video import VideoEncoderOptions

        return VideoEncoderOptions(vcodec=self.vcodec, crf=self.crf, g=self.g)


@dataclass
class CollectConfig:
    env: EnvConfig = field(default_factory=MetaWorldEnvConfig)
    n_episodes: int = 50  # episodes to keep
    output_dir: str | None = None  # dataset directory to create (required)
    seed: int = 0  # attempt k resets the env with seed + k
    keep_failed: bool = False  # also keep episodes where the expert failed
    overwrite: bool = False  # replace an existing output_dir
    max_attempts: int | None = None  # give up after this many episodes (default 2 * n_episodes + 20)
    robot_type: str = "sawyer"  # written to meta/info.json
    progress: bool = True  # tqdm progress bar on stderr
    branches: BranchConfig = field(default_factory=BranchConfig)  # prefix branches (off by default)
    dataset: DatasetOptions = field(default_factory=DatasetOptions)  # --dataset.video=true: cameras as video

    def __post_init__(self) -> None:
        if self.n_episodes <= 0:
            raise ValueError(f"n_episodes must be positive, got {self.n_episodes}")
        if self.max_attempts is not None and self.max_attempts < self.n_episodes:
            raise ValueError(f"max_attempts ({self.max_attempts}) must be >= n_episodes ({self.n_episodes})")

    @property
    def attempts_limit(self) -> int:
        return self.max_attempts if self.max_attempts is not None else 2 * self.n_episodes + 20


@dataclass
class CollectSummary:
    output_dir: Path
    episodes: int
    frames: int
    attempts: int
    successes: int
    branches: int = 0

    @property
    def success_rate(self) -> float:
        return self.successes / self.attempts if self.attempts else 0.0


def _features(env: Any, branches: bool = False, video: bool = False) -> dict[str, dict[str, Any]]:
    feats: dict[str, dict[str, Any]] = {}
    for key, spec in env.observation_spec.items():
        if spec.dtype == "uint8" and len(spec.shape) == 3:
            feats[key] = fmt.image_feature(spec.shape[0], spec.shape[1], video=video)
        else:
            feats[key] = fmt.vector_feature(spec.dtype, int(np.prod(spec.shape)))
    feats[ACTION] = fmt.vector_feature("float32", env.action_dim)
    feats["next.reward"] = {"dtype": "float32", "shape": [1], "names": None}
    feats["next.success"] = {"dtype": "bool", "shape": [1], "names": None}
    feats["next.done"] = {"dtype": "bool", "shape": [1], "names": None}
    if branches:
        feats[PREFIX_LENGTH] = {"dtype": "int64", "shape": [1], "names": None}
    return feats


def run_expert_episode(env: Any, seed: int) -> tuple[dict[str, np.ndarray], bool]:
    """One scripted-expert episode -> (per-frame columns, success)."""
    obs = env.reset(seed=seed)
    keys = list(env.observation_spec)
    cols: dict[str, list[Any]] = {k: [] for k in keys + [ACTION, "next.reward", "next.success", "next.done"]}
    success = False
    while True:
        action = env.expert_action()  # from the float64 raw obs, as MetaWorld's own rollouts
        nxt, reward, terminated, truncated, info = env.step(action)
        for k in keys:
            cols[k].append(obs[k])
        cols[ACTION].append(action)
        cols["next.reward"].append(reward)
        cols["next.success"].append(bool(info["success"]))
        done = bool(terminated or truncated)
        cols["next.done"].append(done)
        success = success or bool(info["success"])
        obs = nxt
        if done:
            break
    frames = {k: np.stack(v) for k, v in cols.items() if k not in ("next.reward", "next.success", "next.done")}
    frames[ACTION] = frames[ACTION].astype(np.float32)
    frames["next.reward"] = np.asarray(cols["next.reward"], dtype=np.float32)
    frames["next.success"] = np.asarray(cols["next.success"], dtype=bool)
    frames["next.done"] = np.asarray(cols["next.done"], dtype=bool)
    return frames, success


def collect(cfg: CollectConfig) -> CollectSummary:
    """Run the expert and write the dataset; see the module docstring."""
    if not cfg.output_dir:
        raise ValueError("--output_dir is required")
    out = Path(cfg.output_dir).expanduser().resolve()
    if out.exists() and not cfg.overwrite:
        raise FileExistsError(f"output_dir {out} already exists; pass --overwrite=true to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)

    from tqdm import tqdm

    writer = None
    try:
        with make_env(cfg.env) as env:
            if not hasattr(env, "expert_action"):
                raise ValueError(f"env type {cfg.env.type!r} has no scripted expert (expert_action)")
            branching = cfg.branches.enabled
            video = cfg.dataset.video
            features = _features(env, branching, video)
            odd = [k for k, f in features.items() if f["dtype"] == "video" and (f["shape"][0] % 2 or f["shape"][1] % 2)]
            if odd:
                raise ValueError(f"--dataset.video=true needs cameras with an even height and width (yuv420p), "
                                 f"{odd[0]} is {features[odd[0]]['shape'][:2]}: use an even --env.image_size")
            writer = LeRobotV3Writer(tmp, fps=env.fps, features=features,
                                     robot_type=cfg.robot_type,
                                     video_options=cfg.dataset.encoder_options() if video else None)
            attempts = successes = frames = n_branches = 0
            seeds, flags = [], []
            bar = tqdm(total=cfg.n_episodes, desc=f"collect {env.task}", unit="ep", disable=not cfg.progress,
                       file=sys.stderr)
            with bar:
                while len(seeds) < cfg.n_episodes:
                    if attempts >= cfg.attempts_limit:
                        raise RuntimeError(
                            f"only {len(seeds)} of {cfg.n_episodes} successful {env.task} episodes after "
                            f"{attempts} attempts (expert success rate {successes / attempts:.0%}); "
                            "raise --max_attempts or pass --keep_failed=true")
                    seed = cfg.seed + attempts
                    ep, ok = run_expert_episode(env, seed)
                    attempts += 1
                    successes += int(ok)
                    if ok or cfg.keep_failed:
                        if branching:
                            ep[PREFIX_LENGTH] = np.zeros(len(ep[ACTION]), dtype=np.int64)
                        writer.add_episode(ep, task=env.task, seed=seed)
                        seeds.append(seed)
                        flags.append(ok)
                        frames += len(ep[ACTION])
                        if branching:
                            for branch in record_branches(env, seed, cfg.branches):
                                writer.add_episode(branch, task=env.task, seed=seed)
                                frames += len(branch[ACTION])
                                n_branches += 1
                        bar.update(1)
                    bar.set_postfix(attempts=attempts, success=f"{successes / attempts:.0%}",
                                    **({"branches": n_branches} if branching else {}))
            writer.finalize(extra_meta={
                "generator": "chunkwise collect",
                "env": {"type": cfg.env.type, **asdict(cfg.env)},
                "seed": cfg.seed,
                "keep_failed": cfg.keep_failed,
                "attempts": attempts,
                "successes": successes,
                "expert_success_rate": successes / attempts,
                "episode_seeds": seeds,
                "episode_success": flags,
                "branches": {**asdict(cfg.branches), "episodes": n_branches} if branching else None,
                "dataset": asdict(cfg.dataset),
            })
        _move_into_place(tmp, out, cfg.overwrite)
    except BaseException:
        if writer is not None:
            writer.abort()
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return CollectSummary(out, len(seeds), frames, attempts, successes, n_branches)


def _move_into_place(tmp: Path, out: Path, overwrite: bool) -> None:
    if out.exists():
        if not overwrite:
            raise FileExistsError(f"output_dir {out} appeared during collection; not replacing it")
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out)


def collect_demonstrations(cfg: CollectConfig) -> Path:
    """Python API: collect and return the dataset directory."""
    return collect(cfg).output_dir


def main(argv: list[str] | None = None) -> int:
    from chunkwise.common.cli import CLIError, parse_cli

    try:
        cfg = parse_cli(CollectConfig, sys.argv[1:] if argv is None else argv, "collect")
    except CLIError:
        return 2
    try:
        s = collect(cfg)
    except (ValueError, FileNotFoundError, FileExistsError) as exc:  # the user's input: as a bad flag
        print(f"chunkwise collect: error: {exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:  # e.g. the expert never succeeded: a failed run, not a usage error
        print(f"chunkwise collect: error: {exc}", file=sys.stderr)
        return 1
    branches = f" + {s.branches} prefix branches" if cfg.branches.enabled else ""
    print(f"task {cfg.env.task}: kept {s.episodes} episodes{branches} ({s.frames} frames) from {s.attempts} "
          f"attempts; expert success rate {s.successes}/{s.attempts} = {s.success_rate:.1%}")
    print(f"wrote LeRobot v3.0 dataset to {s.output_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
