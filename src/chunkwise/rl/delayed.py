"""RL under inference delay: rollouts through the async executor, transitions with the prefix.

``chunkwise rl --rollout_delay=d --rollout_strategy=latest_only`` runs every online and
evaluation episode through the same ``ChunkController`` (trigger, prefix, merge, pop/idle)
and ``LocalTransport`` (the virtual clock: a chunk requested at t from s_t merges at t + d)
that ``chunkwise eval --strategy=latest_only --inference_delay=d`` uses, so the critic and
the actor learn from what the deployed asynchronous system executes. Nothing here repeats
a per-step rule: this module only builds the ``ExecutionConfig`` (with the strategy's own
transform from ``runtime/strategies.py``) and hands it to ``ChunkRunner``.

Timeline, H = 5, d = 2, latest_only, g = 0.5 (the trigger fires when len(queue)/H <= g,
here every H - d = 3 steps; asserted in tests/rl/test_delay.py)::

    t          0    1    2    3    4    5    6    7    8    9   10
    request    s0             s3             s6             s9
    arrival              c0             c1             c2          c_k labels t_k .. t_k+4
    executed   idle idle c0_2 c0_3 c0_4 c1_2 c1_3 c1_4 c2_2 c2_3 c2_4
                         ^ labels t_k, t_k+1 of c_k are stale on arrival (already executed)

    transition of the request at t = 3 (observation s3, the actor's chunk c1):
      prefix       a3 a4            = c0_3 c0_4   executed while c1 is computed (previous chunk)
      executed     a3 .. a7         = prefix, then c1_2 c1_3 c1_4 (c1's executable part)
      rewards      r3 .. r7         of the actions actually executed
      next_obs     s8;  next_prefix a8 a9 = c2_2 c2_3

The Markov state of a delayed system is the observation plus the actions already committed
(Katsikopoulos & Engelbrecht 2003; Bouteiller et al. 2021, "Reinforcement learning with
random delays"), so the chunk critic of Q-chunking (Li, Zhou, Levine 2025) becomes

    Q(s_t, prefix, A) := Q_net(s_t, [a_t .. a_t+d-1, A_o .. A_o+H-d-1])
    y = sum_{i<k} gamma^i r_t+i + gamma^k mask min_j Q_tgt,j(s_t+k, next_prefix, A'),  A' ~ pi(s_t+k)
    actor: E[ alpha log pi(A|s_t) - Q(s_t, prefix, A) ] (+ BC)

with o = d for the async strategies (label i of a chunk requested at t runs at t + i, the
first d are stale) and o = 0 for sync (the robot idles the d prefix steps, then runs the
chunk from its first action). The critic is trained on executed windows: the replay cuts
them at every stored step (``EpisodeReplay(prefix_length=d)``), as Q-chunking does with
offline data; at a request step the window is exactly the timeline above. Async requests
come every P = max(d, ceil(H (1 - g))) steps: with P = H - d (above) the window is prefix +
the chunk's executable part; with P < H - d the next chunk arrives before t + H and the
window's last actions are that chunk's; with P > H - d the queue runs dry and the robot
idles (the idle action is executed and stored, it is part of the window). The critic always
scores what was executed; the actor term assumes its own chunk ran to t + H (the usual
n-step approximation). With d = 0 and sync this is the delay-free rollout of
``rl/rollout.py``.
"""

from __future__ import annotations

from dataclasses import replace

from chunkwise.contracts import ChunkEnv
from chunkwise.rl.config import SACConfig
from chunkwise.rl.learner import ChunkSAC
from chunkwise.rl.rollout import ChunkRunner
from chunkwise.runtime.config import ExecutionConfig
from chunkwise.runtime.strategies import get_strategy


def rollout_execution(cfg: SACConfig, record_trace: bool = False) -> ExecutionConfig:
    """The executor config ``chunkwise eval --strategy=S --actions_per_chunk=H
    --chunk_size_threshold=g`` builds for the same policy (so eval reproduces training)."""
    h = cfg.chunk_size
    base = ExecutionConfig(
        strategy="sync" if cfg.rollout_strategy == "sync" else "async",
        actions_per_chunk=h,
        chunk_size_threshold=cfg.rollout_chunk_size_threshold,
        record_trace=record_trace,
    )
    out = get_strategy(cfg.rollout_strategy).apply(base)
    return replace(out, record_trace=record_trace)


def make_runner(env: ChunkEnv, learner: ChunkSAC, reward_type: str = "sparse", reward_scale: float = 1.0,
                record_trace: bool = False) -> ChunkRunner:
    """``ChunkRunner`` at the learner config's ``rollout_delay`` and ``rollout_strategy``."""
    cfg = learner.cfg
    return ChunkRunner(env, learner, reward_type, reward_scale,
                       execution=rollout_execution(cfg, record_trace), delay=cfg.rollout_delay)
