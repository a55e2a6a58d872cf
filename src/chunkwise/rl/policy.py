"""A ``chunkwise rl`` checkpoint as a ``Policy``: ``chunkwise.policies.load(<rl dir>)``.

    policy = chunkwise.policies.load("outputs/rl_reach")          # run dir -> checkpoints/last
    policy = chunkwise.policies.load("outputs/rl_reach/checkpoints/step_000020000")
    chunk = policy.predict_chunk({"observation.state": states})   # (B, H, A) float32

``predict_chunk`` runs the actor deterministically: every step is ``tanh(mean)`` of its
tanh-Gaussian (the same action the RL evaluation executes), in the env's action units
([-1, 1] for MetaWorld). Only the actor (``model.safetensors``, which carries its own
observation normalisation) and ``config.json`` are read; the critics, replay and
optimiser state stay on disk. ``metadata``: observation spec, action_dim, chunk size H and
fps from the checkpoint, ``prefix_length=None`` (SAC actors do not read the queue).

A run with ``--reference_policy=bc`` (IBRL) executes the better of the RL actor's and the
frozen BC actor's chunk under the critic; its checkpoint policy does the same, reading the
reference actor and the critics from ``learner.safetensors`` (``rl/proposal.py``), so a
deployed checkpoint runs what the RL evaluation measured. Under delay it asks the executor
for the committed prefix (``prefix_length = d``).

``sequence_act`` with an observation history T > 1 was trained on the last T per-step
states; a Policy only sees the observation of each decision, so here the history is the
current state repeated T times (what the actor saw at every episode start).
``metadata.extra["obs_history"]`` says so.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from safetensors.torch import load_file

from chunkwise.policies.registry import register_loader
from chunkwise.rl.checkpoint import CONFIG_FILE, RL_TYPE, STATE_FILE, resolve_checkpoint
from chunkwise.rl.config import ActorConfig, CriticConfig, executed_offset
from chunkwise.rl.networks import ChunkActor, CriticEnsemble, make_actor
from chunkwise.rl.proposal import committed_prefix, pick_proposal
from chunkwise.types import OBS_STATE, FeatureSpec, ObservationBatch, PolicyMetadata, Prefix

MODEL_FILE = "model.safetensors"


def rl_metadata(cfg: Mapping[str, Any], obs_dim: int, action_dim: int, fps: float, **extra: Any) -> PolicyMetadata:
    """Metadata of an RL actor from its (``config_dict``-shaped) RL config."""
    history = int(cfg["actor_net"].get("obs_history_length", 1)) if cfg["actor"] == "sequence_act" else 1
    return PolicyMetadata(
        observation_spec={OBS_STATE: FeatureSpec((int(obs_dim),), "float32")},
        action_dim=int(action_dim),
        chunk_size=int(cfg["chunk_size"]),
        fps=float(fps),
        policy_type=RL_TYPE,
        prefix_length=None,
        extra={
            "actor": str(cfg["actor"]),
            "critic": str(cfg["critic"]),
            "task": str(cfg.get("env", {}).get("task", "")),
            "action": "tanh(mean)",
            "obs_history": "current state" if history == 1 else f"current state repeated {history}x",
            **extra,
        },
    )


def _config(cls: type, d: Mapping[str, Any]) -> Any:
    """A network config dataclass from its saved dict (unknown keys of older/newer runs dropped)."""
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items() if k in names})


@dataclass
class Proposal:
    """What an IBRL checkpoint needs at every decision besides its actor."""

    reference: ChunkActor
    critic: CriticEnsemble
    critic_type: str
    delay: int
    offset: int


class RLActorPolicy:
    """The deterministic SAC actor of an RL checkpoint (see the module docstring)."""

    def __init__(self, actor: ChunkActor, metadata: PolicyMetadata, proposal: Proposal | None = None) -> None:
        self.actor = actor.eval()
        self.proposal = proposal
        if proposal is not None and proposal.delay:
            metadata = dataclasses.replace(metadata, prefix_length=proposal.delay)
        self._metadata = metadata

    @property
    def metadata(self) -> PolicyMetadata:
        return self._metadata

    def reset(self) -> None:
        """Stateless: the actor reads only the current observation."""

    @torch.no_grad()
    def predict_chunk(self, obs_batch: ObservationBatch, prefix: Sequence[Prefix | None] | None = None) -> np.ndarray:
        if OBS_STATE not in obs_batch:
            raise KeyError(f"batch lacks {OBS_STATE!r}, which this RL actor reads (has {sorted(obs_batch)})")
        state = torch.as_tensor(np.asarray(obs_batch[OBS_STATE], dtype=np.float32))
        if state.ndim != 2 or state.shape[1] != self.actor.obs_dim:
            raise ValueError(f"{OBS_STATE} must be (B, {self.actor.obs_dim}), got {tuple(state.shape)}")
        hist = state[:, None, :].expand(-1, self.actor.history, -1)
        chunk = self.actor(hist, deterministic=True).actions
        pr = self.proposal
        if pr is not None:
            committed = None
            if pr.delay:
                if prefix is None or any(p is None for p in prefix):
                    raise ValueError(f"this IBRL checkpoint was trained at delay {pr.delay} and scores its "
                                     "proposals after the committed prefix: the executor must pass it")
                # a queue shorter than d (at the episode's first request: empty) idles; the run stored
                # the env's idle action after a reset (MetaWorld: zero deltas, gripper open), which is
                # what the learner scored there. Older checkpoints fall back to zeros.
                idle = np.asarray(self._metadata.extra.get("idle_action", np.zeros(self.actor.action_dim)), np.float32)
                committed = torch.as_tensor(np.stack([committed_prefix(p, idle) for p in prefix]))
            ref = pr.reference(hist, deterministic=True).actions
            chunk, _ = pick_proposal(pr.critic, state, [chunk, ref], pr.critic_type, committed, pr.delay, pr.offset)
        return chunk.cpu().numpy().astype(np.float32)


def load_rl_policy(path: str | Path) -> RLActorPolicy:
    """Checkpoint dir, ``checkpoints/`` dir or run dir of ``chunkwise rl`` -> RLActorPolicy."""
    ckpt = resolve_checkpoint(path)
    doc = json.loads((ckpt / CONFIG_FILE).read_text())
    if doc.get("type") != RL_TYPE:
        raise ValueError(f"{ckpt / CONFIG_FILE}: type is {doc.get('type')!r}, not {RL_TYPE!r}")
    if not (ckpt / MODEL_FILE).is_file():
        raise FileNotFoundError(f"checkpoint {ckpt} is missing {MODEL_FILE}")
    cfg = doc["config"]
    obs_dim, action_dim = int(doc["obs_dim"]), int(doc["action_dim"])
    if "metadata" in doc:
        meta = PolicyMetadata.from_dict(doc["metadata"])
    else:  # written before the metadata was stored: rebuild it from the config
        extra = {}
        if (ckpt / STATE_FILE).is_file():
            extra["env_steps"] = int(json.loads((ckpt / STATE_FILE).read_text()).get("env_steps", 0))
        meta = rl_metadata(cfg, obs_dim, action_dim, float(cfg.get("env", {}).get("fps", 80.0)), **extra)
    actor = make_actor(cfg["actor"], obs_dim, action_dim, int(cfg["chunk_size"]), _config(ActorConfig, cfg["actor_net"]))
    weights = load_file(str(ckpt / MODEL_FILE))
    missing, unexpected = actor.load_state_dict(weights, strict=False)
    if missing or unexpected:
        raise ValueError(f"{ckpt}: actor weights do not match the config (missing {missing}, unexpected {unexpected})")
    return RLActorPolicy(actor, meta, _load_proposal(ckpt, cfg, obs_dim, action_dim))


def _load_proposal(ckpt: Path, cfg: Mapping[str, Any], obs_dim: int, action_dim: int) -> Proposal | None:
    if cfg.get("reference_policy", "none") == "none":
        return None
    path = ckpt / "learner.safetensors"
    if not path.is_file():
        raise FileNotFoundError(f"{ckpt} was trained with reference_policy={cfg['reference_policy']} and needs "
                                f"learner.safetensors (its reference actor and critics), which is missing")
    sd = load_file(str(path))
    h = int(cfg["chunk_size"])
    reference = make_actor(cfg["actor"], obs_dim, action_dim, h, _config(ActorConfig, cfg["actor_net"]))
    critic = CriticEnsemble(obs_dim, h * action_dim if cfg["critic"] == "chunk" else action_dim,
                            _config(CriticConfig, cfg["critic_net"]))
    for prefix, module in (("reference.", reference), ("critic.", critic)):
        module.load_state_dict({k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)})
        module.eval().requires_grad_(False)
    d = int(cfg.get("rollout_delay", 0))
    offset = executed_offset(cfg.get("rollout_strategy", "sync"), d)
    return Proposal(reference, critic, str(cfg["critic"]), d, offset)


register_loader(RL_TYPE, load_rl_policy)
