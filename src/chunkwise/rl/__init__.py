"""SAC over action chunks (seeds 003/004 + Q-chunking); see docs/rl.md.

    config.py         SACConfig / ActorConfig / CriticConfig (Literal choices, validation)
    distributions.py  tanh-squashed Gaussian over a chunk, joint log-prob = sum over steps
    networks.py       actors mlp | act | sequence_act, critic ensemble
    losses.py         H-step / 1-step TD targets, actor, BC (mse | nll), temperature losses
    replay.py         EpisodeReplay (chunk windows cut on sampling), MixedReplay (demos/online)
    learner.py        ChunkSAC: update / get_weights / load_weights / state_dict
    rollout.py        online episodes + evaluation through VirtualClockExecutor (sync, d=0)
    demos.py          demonstrations from a LeRobot v3 dataset or the scripted expert
    init.py           actor initialisation from a BC ACT checkpoint
    checkpoint.py     one directory per checkpoint, renamed into place; ``last`` symlink;
                      replay save/restore; run dir -> newest checkpoint
    policy.py         an RL checkpoint as a Policy (``chunkwise.policies.load``, type rl_sac)
    train.py          ``chunkwise rl`` (RLConfig, RLTrainer, main)
    report.py         compare runs: curves PNG + markdown table
"""
