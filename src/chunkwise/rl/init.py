"""Initialise a ``ChunkSAC`` actor from a behaviour-cloning ACT checkpoint (``chunkwise train``).

What is mapped (and reported in the returned dict, which ``chunkwise rl`` logs):

* always: the observation normalisation (``observation.state`` mean/std; std < 1e-3 -> 1,
  the BC normaliser's rule) into actor, critics and target critics;
* ``actor=act`` with the same dim_model / n_heads / dim_feedforward / n_decoder_layers /
  chunk_size (and a single action head group):
    - ``model.state_proj``      -> ``obs_proj``        (state token projection)
    - ``model.queries``         -> ``chunk_queries``   (learned chunk queries)
    - ``model.decoder.*``       -> ``decoder.*``       (same layer type, GELU, pre-norm)
    - ``model.heads.action``    -> ``mean_head`` with the action un-normalisation folded in:
      W' = diag(std_a) W, b' = std_a * b + mean_a, so the pre-tanh mean equals the BC
      action (tanh(x) ~ x for small |x|; saturated expert actions end up near +-1).
  Not mapped: the BC transformer encoder and CVAE (seed 003's actor has no encoder, so the
  decoder now reads the projected state token directly instead of the encoder output) and
  ``log_std_head`` (no counterpart; stays at its initialisation). Because the memory token
  changes, the mapped decoder is a starting point; ``--init.bc_warmstart_steps`` then
  regresses the actor mean on the demonstrations.
* other actors (``mlp``, ``sequence_act``) or mismatching sizes: stats only.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from chunkwise.rl.learner import ChunkSAC
from chunkwise.types import ACTION, OBS_STATE


_DECODER_SIZES = ("dim_model", "n_heads", "dim_feedforward", "n_decoder_layers")


def adopt_bc_sizes(cfg: Any, path: str | Path) -> dict[str, Any]:
    """Copy the BC ACT checkpoint's decoder sizes into ``cfg.actor_net`` (``actor=act`` only).

    Called before the learner is built so that ``map_bc_checkpoint`` can map the decoder.
    Returns {field: (old, new)} for the fields that changed. ``chunk_size`` is not changed
    (it defines the RL problem); a mismatch leaves the decoder unmapped and is reported.
    """
    if cfg.actor != "act":
        return {}
    cfg_file = Path(path) / "config.json"
    if not cfg_file.is_file():
        raise FileNotFoundError(f"init.path={path}: {cfg_file} does not exist (expected a chunkwise checkpoint)")
    blob = json.loads(cfg_file.read_text())
    if blob.get("type") != "act":
        return {}
    bc = blob.get("config", {})
    changed = {}
    for name in _DECODER_SIZES:
        if name in bc and getattr(cfg.actor_net, name) != bc[name]:
            changed[name] = (getattr(cfg.actor_net, name), bc[name])
            setattr(cfg.actor_net, name, int(bc[name]))
    cfg.actor_net.__post_init__()
    return changed


def map_bc_checkpoint(learner: ChunkSAC, path: str | Path) -> dict[str, Any]:
    from chunkwise.policies import registry

    policy = registry.load(path)
    report: dict[str, Any] = {"init_path": str(path), "mapped": [], "not_mapped": []}
    normalizer = getattr(policy, "normalizer", None)
    stats = normalizer.stats_dict() if normalizer is not None else {}
    if OBS_STATE in stats:
        mean, std = stats[OBS_STATE]["mean"], stats[OBS_STATE]["std"]
        if mean.shape != (learner.obs_dim,):
            raise ValueError(f"{path}: BC state dim {mean.shape} != env state dim ({learner.obs_dim},)")
        learner.set_obs_stats(mean, np.where(std < 1e-3, 1.0, std))
        report["mapped"].append("observation.state mean/std")
    else:
        report["not_mapped"].append("observation.state stats (checkpoint has none)")

    model = getattr(policy, "model", None)
    bc_cfg = getattr(policy, "config", None)
    ok, why = _act_compatible(learner, model, bc_cfg)
    if not ok:
        report["not_mapped"].append(f"network weights: {why}")
        return report
    actor = learner.actor
    with torch.no_grad():
        actor.obs_proj.load_state_dict(model.state_proj.state_dict())
        actor.chunk_queries.copy_(model.queries.weight[None])
        actor.decoder.load_state_dict(model.decoder.state_dict())
        head = model.heads[model.group_slices[0][0]]
        a_std = torch.as_tensor(np.where(stats[ACTION]["std"] < 1e-3, 1.0, stats[ACTION]["std"]), dtype=torch.float32)
        a_mean = torch.as_tensor(stats[ACTION]["mean"], dtype=torch.float32)
        actor.mean_head.weight.copy_(a_std[:, None] * head.weight)
        actor.mean_head.bias.copy_(a_std * head.bias + a_mean)
    report["mapped"] += ["state_proj -> obs_proj", "queries -> chunk_queries", "decoder.* -> decoder.*",
                         "heads.action (+ action un-normalisation) -> mean_head"]
    report["not_mapped"] += ["encoder + CVAE (the act actor has no encoder)", "log_std_head (no counterpart)"]
    if actor.feature_tokens:
        report["not_mapped"].append("feature tokens of actor_net.memory=state_and_features (new, random)")
    return report


def _act_compatible(learner: ChunkSAC, model: Any, bc_cfg: Any) -> tuple[bool, str]:
    if learner.cfg.actor != "act":
        return False, f"actor={learner.cfg.actor} has no ACT decoder (only actor=act maps weights)"
    if model is None or bc_cfg is None or not hasattr(model, "decoder"):
        return False, "checkpoint is not an ACT policy"
    net = learner.cfg.actor_net
    pairs = {
        "dim_model": (bc_cfg.dim_model, net.dim_model),
        "n_heads": (bc_cfg.n_heads, net.n_heads),
        "dim_feedforward": (bc_cfg.dim_feedforward, net.dim_feedforward),
        "n_decoder_layers": (bc_cfg.n_decoder_layers, net.n_decoder_layers),
        "chunk_size": (bc_cfg.chunk_size, learner.cfg.chunk_size),
    }
    bad = [f"{k} {a} (BC) != {b} (RL)" for k, (a, b) in pairs.items() if a != b]
    if bad:
        return False, "sizes differ: " + ", ".join(bad)
    if getattr(model, "state_proj", None) is None or len(model.group_slices) != 1:
        return False, "BC model has no state input or several action head groups"
    return True, ""
