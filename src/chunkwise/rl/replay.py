"""Chunk-level replay: steps are stored per episode, chunk transitions are cut on sampling.

A sampled transition at step t of an episode of length T (k = min(H, T - t) valid steps)::

    step:     t      t+1    ...   t+k-1 | t+k ... t+H-1   (beyond the episode end: padding)
    obs:      s_t                        |
    chunk:    a_t    a_t+1  ...   a_t+k-1| a_t+k-1 repeated (never executed)
    rewards:  r_t    r_t+1  ...   r_t+k-1| 0
    next_obs:                     s_t+k  (the observation after the k-th action)
    mask:     0 if the episode terminated inside the window (true terminal), else 1
    valid:    k   (bootstrap discount is gamma^k)

Any executed action sequence is a valid chunk for Q(s_t, a_t..a_t+H-1), so windows start
at every step, not only at the decision steps where the policy emitted a chunk
(Q-chunking does the same with offline data). ``first_*`` fields hold the 1-step
transition (s_t, a_t, r_t, s_t+1, mask) for ``critic=first_action``.

With ``prefix_length`` = d > 0 (RL under delay, rl/delayed.py) a transition also holds the
executed prefix and the d actions executed after the window (padded with the episode's
last action past its end)::

    prefix:       a_t .. a_t+d-1             (executed while a chunk requested at t is computed)
    next_prefix:  a_t+k .. a_t+k+d-1         (the same for the bootstrap state s_t+k)

Only complete episodes are added, so a window never reads an unfinished episode. The
buffer is a ring: if the oldest episode is partly overwritten, its remaining steps stay
consistent because overwriting proceeds in step order; history look-ups that would reach
into overwritten steps repeat the oldest surviving step instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Episode:
    """One finished episode. ``next_states[t]`` is the observation after ``actions[t]``."""

    states: np.ndarray  # (T, S) float32
    actions: np.ndarray  # (T, A) float32
    rewards: np.ndarray  # (T,) float32
    next_states: np.ndarray  # (T, S)
    terminated: bool  # the last step is a true terminal (no bootstrap)

    def __post_init__(self) -> None:
        self.states = np.asarray(self.states, np.float32)
        self.actions = np.asarray(self.actions, np.float32)
        self.rewards = np.asarray(self.rewards, np.float32).reshape(-1)
        self.next_states = np.asarray(self.next_states, np.float32)
        t = len(self.actions)
        if t == 0:
            raise ValueError("an episode needs at least one step")
        for name in ("states", "rewards", "next_states"):
            if len(getattr(self, name)) != t:
                raise ValueError(f"episode {name} has length {len(getattr(self, name))}, actions have {t}")

    def __len__(self) -> int:
        return len(self.actions)


class EpisodeReplay:
    def __init__(self, capacity: int, state_dim: int, action_dim: int, prefix_length: int = 0) -> None:
        if capacity <= 0:
            raise ValueError(f"replay capacity must be positive, got {capacity}")
        if prefix_length < 0:
            raise ValueError(f"prefix_length must be >= 0, got {prefix_length}")
        self.capacity, self.state_dim, self.action_dim = capacity, state_dim, action_dim
        self.prefix_length = prefix_length  # d: executed actions stored as prefix/next_prefix
        self.states = np.zeros((capacity, state_dim), np.float32)
        self.next_states = np.zeros((capacity, state_dim), np.float32)
        self.actions = np.zeros((capacity, action_dim), np.float32)
        self.rewards = np.zeros(capacity, np.float32)
        self.terminal = np.zeros(capacity, bool)  # this step ends the episode with a true terminal
        self.remaining = np.zeros(capacity, np.int64)  # steps left in the episode incl. this one
        self.offset = np.zeros(capacity, np.int64)  # steps since the episode start
        self.episode_id = np.full(capacity, -1, np.int64)
        self.pos = 0
        self.size = 0
        self.n_episodes = 0
        self.total_steps = 0

    def __len__(self) -> int:
        return self.size

    def add_episode(self, ep: Episode) -> None:
        t = len(ep)
        if t > self.capacity:
            raise ValueError(f"episode of {t} steps does not fit a replay of capacity {self.capacity}")
        idx = (self.pos + np.arange(t)) % self.capacity
        self.states[idx], self.next_states[idx], self.actions[idx] = ep.states, ep.next_states, ep.actions
        self.rewards[idx] = ep.rewards
        self.terminal[idx] = False
        self.terminal[idx[-1]] = bool(ep.terminated)
        self.remaining[idx] = t - np.arange(t)
        self.offset[idx] = np.arange(t)
        self.episode_id[idx] = self.n_episodes
        self.n_episodes += 1
        self.total_steps += t
        self.pos = (self.pos + t) % self.capacity
        self.size = min(self.capacity, self.size + t)

    def sample(self, n: int, chunk_size: int, gamma: float, history: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        if self.size == 0:
            raise ValueError("cannot sample from an empty replay")
        idx = rng.integers(0, self.size, size=n)
        return self.gather(idx, chunk_size, gamma, history)

    def gather(self, idx: np.ndarray, chunk_size: int, gamma: float, history: int) -> dict[str, np.ndarray]:
        """Chunk transitions starting at buffer indices ``idx`` (see the module docstring)."""
        h, cap = chunk_size, self.capacity
        k = np.minimum(self.remaining[idx], h)  # (n,) valid steps
        j = np.arange(h)[None, :]
        steps = (idx[:, None] + np.minimum(j, k[:, None] - 1)) % cap  # pad by repeating the last step
        inside = j < k[:, None]
        rewards = np.where(inside, self.rewards[steps], 0.0).astype(np.float32)
        last = steps[np.arange(len(idx)), k - 1]
        term = self.terminal[last]
        disc = (gamma ** np.arange(h))[None, :]
        first = idx % cap
        out = {
            "obs": self._history(idx, history),  # (n, T, S)
            "chunk": self.actions[steps],  # (n, H, A)
            "rewards": rewards,  # (n, H)
            "valid": k.astype(np.int64),  # (n,)
            "step_mask": inside.astype(np.float32),  # (n, H)
            "discounted_return": (rewards * disc).sum(1).astype(np.float32),
            "bootstrap_discount": (gamma ** k).astype(np.float32),
            "mask": (~term).astype(np.float32),
            "next_obs": self._history(last, history, next_of=True),
            "first_reward": self.rewards[first],
            "first_mask": (~self.terminal[first]).astype(np.float32),
            "first_next_obs": self._history(first, history, next_of=True),
        }
        if self.prefix_length:
            out["prefix"] = self._executed(idx, np.zeros_like(k), self.prefix_length)
            out["next_prefix"] = self._executed(idx, k, self.prefix_length)
        return out

    def _executed(self, idx: np.ndarray, start: np.ndarray, n: int) -> np.ndarray:
        """(len(idx), n, A): actions at steps idx+start .. idx+start+n-1 of each episode,
        the episode's last action repeated past its end."""
        last = self.remaining[idx][:, None] - 1  # offset of the episode's last step from idx
        off = np.minimum(start[:, None] + np.arange(n)[None, :], last)
        return self.actions[(idx[:, None] + off) % self.capacity]

    def _history(self, idx: np.ndarray, history: int, next_of: bool = False) -> np.ndarray:
        """(n, T, S) states ending at s_idx (or at s_idx+1 = next_states[idx] if ``next_of``).

        At the episode start the history is padded by repeating the first state.
        """
        if next_of:
            # s_{idx+1-m} for m >= 1 is the history of length T-1 ending at s_idx
            prev = self._history(idx, history - 1) if history > 1 else np.zeros((len(idx), 0, self.state_dim), np.float32)
            return np.concatenate([prev, self.next_states[idx % self.capacity][:, None]], axis=1)
        cap = self.capacity
        back = np.arange(history - 1, -1, -1)[None, :]  # T-1 ... 0 steps back
        lag = np.minimum(back, self.offset[idx][:, None])
        hidx = (idx[:, None] - lag) % cap
        same = self.episode_id[hidx] == self.episode_id[idx][:, None]  # overwritten -> repeat idx
        hidx = np.where(same, hidx, idx[:, None])
        return self.states[hidx]


class MixedReplay:
    """Offline demonstrations + online experience, mixed per batch.

    A batch of n has round(n * offline_ratio) demo transitions (the first rows, flagged by
    ``is_demo``) and the rest online; if one side is empty the other fills the batch.
    """

    def __init__(self, offline: EpisodeReplay, online: EpisodeReplay, offline_ratio: float) -> None:
        if not 0.0 <= offline_ratio <= 1.0:
            raise ValueError(f"offline_ratio must be in [0, 1], got {offline_ratio}")
        self.offline, self.online, self.offline_ratio = offline, online, offline_ratio

    def split(self, n: int) -> tuple[int, int]:
        if len(self.online) == 0:
            return n, 0
        if len(self.offline) == 0:
            return 0, n
        n_off = int(round(n * self.offline_ratio))
        return n_off, n - n_off

    def sample(self, n: int, chunk_size: int, gamma: float, history: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        n_off, n_on = self.split(n)
        parts = []
        if n_off:
            parts.append(self.offline.sample(n_off, chunk_size, gamma, history, rng))
        if n_on:
            parts.append(self.online.sample(n_on, chunk_size, gamma, history, rng))
        batch = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        batch["is_demo"] = np.concatenate([np.ones(n_off, np.float32), np.zeros(n_on, np.float32)])
        return batch
