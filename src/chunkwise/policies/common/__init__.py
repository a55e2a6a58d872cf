"""Building blocks shared by the learned policies (ACT, flow matching).

- ``config.PolicyConfig``: draccus ChoiceRegistry of policy configs (``--policy.type=act``).
- ``normalize.Normalizer``: dataset stats as buffers; normalize inputs, unnormalize actions.
- ``vision.ConvBackbone``: a small CNN image encoder in plain torch (no torchvision).
- ``embeddings``: sinusoidal 1-D / 2-D position and time embeddings.
- ``checkpoint``: atomic checkpoint directories (safetensors + JSON, never pickle).
- ``compat.check_compatible``: policy metadata vs env, checked before any episode.
"""
