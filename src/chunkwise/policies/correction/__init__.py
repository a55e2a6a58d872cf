"""Per-step correction head (A2C2, "Leave No Observation Behind", Sendai et al. 2025).

A small MLP runs in the client at every control step on the latest observation, the
popped (possibly stale) base action and its position in its chunk, and adds a residual::

    a_t = clip(b_t + r_theta(s_t, b_t, i_t / H, age_t / H), -1, 1)

It composes with any base strategy as ``<base>+correction`` (runtime/strategies.py);
the hook itself runs in ``ChunkController.execute``, the same on both clocks.
"""

from chunkwise.policies.correction.head import CorrectionConfig, CorrectionHead, correction_targets

__all__ = ["CorrectionConfig", "CorrectionHead", "correction_targets"]
