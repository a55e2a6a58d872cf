"""``ChunkSAC``: the learner (actor, critic ensemble, target critics, temperature).

Contract used by the training loop and by anyone embedding the learner elsewhere:

    update(batch) -> dict[str, float]      one critic + actor + temperature step, then Polyak
    bc_update(batch) -> dict[str, float]   BC warm-start step of the actor mean on demo rows
    act(obs, deterministic) -> (H, A)      chunk for one observation history (T, S)
    get_weights() / load_weights(w)        actor only: flat {name: tensor}, safetensors-ready
    state_dict() / load_state_dict(sd)     everything: actor, critics, target critics,
                                           log temperature, optimizer moments, step counter

``batch`` is the dict produced by ``MixedReplay.sample`` (numpy or torch).

Under delay (``rollout_delay`` = d > 0, rl/delayed.py) the chunk critic scores the H
actions executed from s_t, of which the first d (the prefix) were already committed when
the chunk was requested; the actor's chunk A enters through its executed part
(o = ``executed_offset``: d async, 0 sync)::

    Q(s_t, prefix, A) := Q_net(s_t, [a_t..a_t+d-1, A_o .. A_o+H-d-1])

With ``reference_policy=bc`` (IBRL) ``set_reference()`` freezes the current actor as
pi_ref; ``act`` then returns whichever of {A_rl, pi_ref(s)} the critic scores higher and
the TD target bootstraps from the better of the two (``SACConfig.reference_policy``).
"""

from __future__ import annotations

import contextlib
import copy
from typing import Any, Iterator, Mapping

import numpy as np
import torch
import torch.nn as nn

from chunkwise.rl import losses
from chunkwise.rl.config import SACConfig
from chunkwise.rl.networks import ChunkActor, CriticEnsemble, make_actor
from chunkwise.rl.proposal import critic_input, executed_window, min_q, pick_proposal


def _to_tensors(batch: Mapping[str, Any], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: torch.as_tensor(np.asarray(v) if not torch.is_tensor(v) else v, device=device) for k, v in batch.items()}


class ChunkSAC:
    def __init__(self, cfg: SACConfig, obs_dim: int, action_dim: int, device: str = "cpu") -> None:
        self.cfg, self.obs_dim, self.action_dim = cfg, obs_dim, action_dim
        self.device = torch.device(device)
        h = cfg.chunk_size
        self.actor: ChunkActor = make_actor(cfg.actor, obs_dim, action_dim, h, cfg.actor_net).to(self.device)
        critic_in = h * action_dim if cfg.critic == "chunk" else action_dim
        self.critic = CriticEnsemble(obs_dim, critic_in, cfg.critic_net).to(self.device)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.log_alpha = nn.Parameter(torch.tensor(float(np.log(cfg.init_temperature)), device=self.device))
        # the actor samples H*A dims in both critic modes (seed 004 keeps the joint log-prob)
        self.target_entropy = cfg.target_entropy_per_dim * h * action_dim
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=cfg.actor_lr)
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=cfg.critic_lr)
        self.alpha_opt = torch.optim.Adam([self.log_alpha], lr=cfg.temperature_lr)
        self._teacher_forced = bool(getattr(self.actor, "autoregressive", False))
        self.step = 0  # learner (critic) updates so far; drives the BC weight schedule
        self.reference: ChunkActor | None = None  # frozen pi_ref (IBRL), set by set_reference()
        self.picks = {"rl": 0, "reference": 0}  # which proposal act() executed, for the logs

    # ----------------------------------------------------------------- helpers
    @property
    def temperature(self) -> torch.Tensor:
        return self.log_alpha.exp()

    def set_obs_stats(self, mean: np.ndarray, std: np.ndarray) -> None:
        """Observation normalisation shared by actor, critics and targets: std -> max(std, obs_std_floor)."""
        for m in (self.actor, self.critic, self.critic_target):
            m.set_stats(torch.as_tensor(mean), torch.as_tensor(std), self.cfg.obs_std_floor)

    def _with_prefix(self, prefix: torch.Tensor | None, chunk: torch.Tensor) -> torch.Tensor:
        """(n, H, A): the executed window when the actor's ``chunk`` is requested after ``prefix``."""
        return executed_window(prefix, chunk, self.cfg.rollout_delay, self.cfg.executed_offset)

    def _critic_actions(self, chunk: torch.Tensor) -> torch.Tensor:
        return critic_input(chunk, self.cfg.critic)

    def _clip(self, module: nn.Module) -> float:
        if self.cfg.grad_clip_norm > 0:
            return float(nn.utils.clip_grad_norm_(module.parameters(), self.cfg.grad_clip_norm))
        return float(torch.sqrt(sum((p.grad**2).sum() for p in module.parameters() if p.grad is not None)))

    def set_reference(self) -> None:
        """Freeze a copy of the actor as it is now (after BC initialisation) as pi_ref."""
        self.reference = copy.deepcopy(self.actor).requires_grad_(False)

    def _q_min(self, critic: CriticEnsemble, state: torch.Tensor, prefix: torch.Tensor | None,
               chunk: torch.Tensor) -> torch.Tensor:
        return min_q(critic, state, chunk, self.cfg.critic, prefix, self.cfg.rollout_delay, self.cfg.executed_offset)

    @torch.no_grad()
    def act(self, obs: np.ndarray, deterministic: bool = False, prefix: np.ndarray | None = None) -> np.ndarray:
        """(T, S) observation history -> (H, A) chunk in [-1, 1].

        With a reference policy: argmax over {A_rl, A_ref} of min_j Q_j(s, prefix, A);
        ``prefix`` is the (d, A) committed prefix under delay (ignored at d = 0).
        """
        x = torch.as_tensor(np.asarray(obs, np.float32), device=self.device)[None]
        with _eval_mode(self.actor, self.reference):
            chunk = self.actor(x, deterministic=deterministic).actions
            if self.reference is None:
                return chunk[0].cpu().numpy()
            p = None if prefix is None else torch.as_tensor(np.asarray(prefix, np.float32), device=self.device)[None]
            ref = self.reference(x, deterministic=True).actions
        best, idx = pick_proposal(self.critic, x[:, -1], [chunk, ref], self.cfg.critic, p,
                                  self.cfg.rollout_delay, self.cfg.executed_offset)
        self.picks["reference" if int(idx[0]) else "rl"] += 1
        return best[0].cpu().numpy()

    # ----------------------------------------------------------------- updates
    def compute_target(self, b: Mapping[str, torch.Tensor]) -> torch.Tensor:
        cfg = self.cfg
        with torch.no_grad():
            alpha = self.temperature
            if cfg.critic == "chunk":
                obs, prefix = b["next_obs"], b.get("next_prefix")
            else:
                obs, prefix = b["first_next_obs"], None
            nxt = self.actor(obs)
            q_next = self._q_min(self.critic_target, obs[:, -1], prefix, nxt.actions)
            v = q_next - alpha * nxt.log_prob if cfg.backup_entropy else q_next
            if self.reference is not None and cfg.reference_bootstrap:
                ref = self.reference(obs, deterministic=True).actions
                v = torch.maximum(v, self._q_min(self.critic_target, obs[:, -1], prefix, ref))
            if cfg.critic == "chunk":
                return losses.chunk_td_target(b["rewards"], b["valid"], b["mask"], v, cfg.gamma)
            one = torch.ones_like(b["valid"])
            return losses.chunk_td_target(b["first_reward"][:, None], one, b["first_mask"], v, cfg.gamma)

    def update(self, batch: Mapping[str, Any]) -> dict[str, float]:
        cfg = self.cfg
        b = _to_tensors(batch, self.device)
        state = b["obs"][:, -1]

        # critic: regress every ensemble member on the shared (min-of-targets) target
        target = self.compute_target(b)
        q_pred = self.critic(state, self._critic_actions(b["chunk"]))
        c_loss = losses.critic_loss(q_pred, target)
        self.critic_opt.zero_grad(set_to_none=True)
        c_loss.backward()
        c_grad = self._clip(self.critic)
        self.critic_opt.step()

        stats = {
            "critic_loss": c_loss.item(),
            "q_mean": q_pred.mean().item(),
            "target_mean": target.mean().item(),
            "critic_grad_norm": c_grad,
        }
        if self.step >= cfg.critic_warmup_steps:
            stats.update(self._actor_step(b, state))
        self._polyak()
        self.step += 1
        return stats

    def _actor_step(self, b: Mapping[str, torch.Tensor], state: torch.Tensor) -> dict[str, float]:
        cfg = self.cfg
        # actor: alpha * joint log-prob - agg Q, plus the decaying BC term on demo rows
        out = self.actor(b["obs"])
        self.critic.requires_grad_(False)  # the actor step must not leave grads in the critic
        q_pi = self.critic(state, self._critic_actions(self._with_prefix(b.get("prefix"), out.actions)))
        self.critic.requires_grad_(True)
        sac = losses.actor_loss(out.log_prob, q_pi, self.temperature, cfg.q_aggregation, cfg.normalize_q)
        w_bc = cfg.bc_weight_at(self.step)
        is_demo = b.get("is_demo", torch.zeros(state.shape[0], device=self.device))
        bc = torch.zeros((), device=self.device)
        if w_bc > 0 and float(is_demo.sum()) > 0:
            bc = self._bc_loss(b, is_demo, out.dist if not self._teacher_forced else None)
        a_loss = sac + w_bc * bc
        self.actor_opt.zero_grad(set_to_none=True)
        a_loss.backward()
        a_grad = self._clip(self.actor)
        self.actor_opt.step()

        t_loss = losses.temperature_loss(self.log_alpha, out.log_prob, self.target_entropy)
        if cfg.auto_temperature:
            self.alpha_opt.zero_grad(set_to_none=True)
            t_loss.backward()
            self.alpha_opt.step()
        return {
            "actor_loss": a_loss.item(),
            "sac_loss": sac.item(),
            "bc_loss": bc.item(),
            "bc_weight": float(w_bc),
            "temperature": self.temperature.item(),
            "entropy": -out.log_prob.mean().item(),
            "temperature_loss": t_loss.item(),
            "actor_grad_norm": a_grad,
        }

    def _bc_loss(
        self, b: Mapping[str, torch.Tensor], rows: torch.Tensor, dist: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> torch.Tensor:
        # non-autoregressive actors reuse the distribution of the SAC sample; AR needs teacher forcing
        mean, log_std = dist if dist is not None else self.actor.teacher_forced(b["obs"], b["chunk"])
        if self.cfg.bc_loss == "nll":
            return losses.bc_chunk_nll(mean, log_std, b["chunk"], b["step_mask"], rows)
        return losses.bc_chunk_loss(torch.tanh(mean), b["chunk"], b["step_mask"], rows)

    def bc_update(self, batch: Mapping[str, Any]) -> dict[str, float]:
        """Warm start: the BC loss (``bc_loss``) of the actor on demo chunks (all rows)."""
        b = _to_tensors(batch, self.device)
        ones = torch.ones(b["chunk"].shape[0], device=self.device)
        loss = self._bc_loss(b, ones)
        self.actor_opt.zero_grad(set_to_none=True)
        loss.backward()
        self._clip(self.actor)
        self.actor_opt.step()
        return {"bc_loss": loss.item()}

    @torch.no_grad()
    def _polyak(self) -> None:
        tau = self.cfg.tau
        for p, tp in zip(self.critic.parameters(), self.critic_target.parameters()):
            tp.lerp_(p, tau)  # tp <- (1 - tau) * tp + tau * p

    # ----------------------------------------------------------------- weights
    def get_weights(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().cpu().clone().contiguous() for k, v in self.actor.state_dict().items()}

    def load_weights(self, weights: Mapping[str, torch.Tensor]) -> None:
        self.actor.load_state_dict(dict(weights))

    def _modules(self) -> list[tuple[str, nn.Module]]:
        mods: list[tuple[str, nn.Module]] = [("actor", self.actor), ("critic", self.critic),
                                             ("critic_target", self.critic_target)]
        return mods + ([("reference", self.reference)] if self.reference is not None else [])

    def _optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"actor": self.actor_opt, "critic": self.critic_opt, "alpha": self.alpha_opt}

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Flat {name: tensor}: actor.*, critic.*, critic_target.*, log_alpha, optim.*, step."""
        sd: dict[str, torch.Tensor] = {}
        for prefix, module in self._modules():
            sd.update({f"{prefix}.{k}": v.detach().cpu().clone().contiguous() for k, v in module.state_dict().items()})
        sd["log_alpha"] = self.log_alpha.detach().cpu().clone().reshape(1)
        sd["step"] = torch.tensor([self.step], dtype=torch.int64)
        for name, opt in self._optimizers().items():
            for i, st in opt.state_dict()["state"].items():
                for key, val in st.items():
                    sd[f"optim.{name}.{i}.{key}"] = torch.as_tensor(val).detach().cpu().clone().contiguous()
        return sd

    def load_state_dict(self, sd: Mapping[str, torch.Tensor]) -> None:
        if self.reference is None and any(k.startswith("reference.") for k in sd):
            self.set_reference()  # shapes from the actor; the weights come just below
        for prefix, module in self._modules():
            n = len(prefix) + 1
            module.load_state_dict({k[n:]: v for k, v in sd.items() if k.startswith(prefix + ".")})
        with torch.no_grad():
            self.log_alpha.copy_(sd["log_alpha"].reshape(()))
        self.step = int(sd["step"].reshape(-1)[0])
        for name, opt in self._optimizers().items():
            state: dict[int, dict[str, torch.Tensor]] = {}
            pre = f"optim.{name}."
            for k, v in sd.items():
                if k.startswith(pre):
                    i, key = k[len(pre) :].split(".", 1)
                    state.setdefault(int(i), {})[key] = v.to(self.device) if key != "step" else v
            opt.load_state_dict({"state": state, "param_groups": opt.state_dict()["param_groups"]})


@contextlib.contextmanager
def _eval_mode(*modules: nn.Module | None) -> Iterator[None]:
    """Run the actors as the loaded checkpoint policy does (``.eval()``). Dropout is 0, but
    torch's attention takes a fused fast path in eval mode whose float error (~1e-5) is enough
    to make a MetaWorld episode diverge, so the run's evaluation and ``chunkwise eval`` of its
    checkpoint would differ by an episode now and then."""
    mods = [m for m in modules if m is not None]
    was = [m.training for m in mods]
    for m in mods:
        m.eval()
    try:
        yield
    finally:
        for m, w in zip(mods, was, strict=True):
            m.train(w)
