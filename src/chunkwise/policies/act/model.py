"""The ACT network: CVAE encoder (training only) + transformer encoder-decoder.

Inputs are already normalized; outputs are normalized actions.

    training (use_vae):
      VAE encoder  [CLS, state, a_0 .. a_{H-1}] --transformer--> CLS -> (mu, log var)
      z = mu + exp(log var / 2) * eps
    inference: z = 0 (the prior mean)

      encoder tokens  [z, state, image tokens (C x h x w -> h*w tokens per camera)]
      decoder         H learned queries, cross-attending to the encoder output
      heads           one Linear per action group -> concatenated (B, H, A)

KL(q || N(0, I)) = -1/2 * sum_j (1 + log var_j - mu_j^2 - exp(log var_j)), averaged over the batch.
"""

from __future__ import annotations

import torch
from torch import nn

from chunkwise.policies.act.config import ACTConfig, validate_action_groups
from chunkwise.policies.common.embeddings import sinusoidal_1d, sinusoidal_2d
from chunkwise.policies.common.vision import ConvBackbone


def _encoder(cfg: ACTConfig, n_layers: int) -> nn.TransformerEncoder:
    layer = nn.TransformerEncoderLayer(
        cfg.dim_model, cfg.n_heads, cfg.dim_feedforward, cfg.dropout, activation="gelu", batch_first=True, norm_first=True
    )
    return nn.TransformerEncoder(layer, n_layers, norm=nn.LayerNorm(cfg.dim_model), enable_nested_tensor=False)


class ACTModel(nn.Module):
    def __init__(self, cfg: ACTConfig, state_dim: int, action_dim: int, n_cameras: int = 0) -> None:
        super().__init__()
        if state_dim <= 0 and n_cameras == 0:
            raise ValueError("ACT needs a state input or at least one camera")
        self.cfg = cfg
        self.state_dim, self.action_dim, self.n_cameras = state_dim, action_dim, n_cameras
        d, horizon = cfg.dim_model, cfg.chunk_size

        if cfg.use_vae:
            self.vae_cls = nn.Parameter(torch.zeros(1, 1, d))
            self.vae_state_proj = nn.Linear(state_dim, d) if state_dim > 0 else None
            self.vae_action_proj = nn.Linear(action_dim, d)
            self.vae_encoder = _encoder(cfg, cfg.n_vae_encoder_layers)
            self.vae_out = nn.Linear(d, 2 * cfg.latent_dim)
            n_vae_tokens = 1 + (1 if state_dim > 0 else 0) + horizon
            self.register_buffer("vae_pos", sinusoidal_1d(n_vae_tokens, d), persistent=False)

        self.latent_proj = nn.Linear(cfg.latent_dim, d)
        self.state_proj = nn.Linear(state_dim, d) if state_dim > 0 else None
        self.token_pos = nn.Embedding(2, d)  # learned positions of the latent and state tokens
        if n_cameras:
            self.backbone = ConvBackbone(tuple(cfg.image_backbone_channels))
            self.image_proj = nn.Conv2d(self.backbone.out_channels, d, kernel_size=1)
            self.camera_embed = nn.Embedding(n_cameras, d)
        self.encoder = _encoder(cfg, cfg.n_encoder_layers)

        self.queries = nn.Embedding(horizon, d)
        dec_layer = nn.TransformerDecoderLayer(
            d, cfg.n_heads, cfg.dim_feedforward, cfg.dropout, activation="gelu", batch_first=True, norm_first=True
        )
        self.decoder = nn.TransformerDecoder(dec_layer, cfg.n_decoder_layers, norm=nn.LayerNorm(d))

        groups = cfg.action_groups or {"action": [0, action_dim]}
        self.group_slices = validate_action_groups(groups, action_dim)
        self.heads = nn.ModuleDict({name: nn.Linear(d, end - start) for name, start, end in self.group_slices})

    def encode_latent(
        self, state: torch.Tensor | None, actions: torch.Tensor, is_pad: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior q(z | state, actions) -> (mu, log var), each (B, latent_dim)."""
        b = actions.shape[0]
        tokens = [self.vae_cls.expand(b, -1, -1)]
        if self.vae_state_proj is not None and state is not None:
            tokens.append(self.vae_state_proj(state).unsqueeze(1))
        tokens.append(self.vae_action_proj(actions))
        x = torch.cat(tokens, dim=1) + self.vae_pos
        mask = None
        if is_pad is not None:
            n_front = x.shape[1] - actions.shape[1]
            mask = torch.cat([torch.zeros(b, n_front, dtype=torch.bool, device=x.device), is_pad.bool()], dim=1)
        out = self.vae_encoder(x, src_key_padding_mask=mask)[:, 0]
        mu, log_var = self.vae_out(out).chunk(2, dim=-1)
        return mu, log_var

    def forward(
        self,
        state: torch.Tensor | None,
        images: list[torch.Tensor] | None = None,
        actions: torch.Tensor | None = None,
        is_pad: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """-> (actions (B, H, A), mu, log var); mu/log var are None unless the posterior was used.

        The posterior is used when ``use_vae`` and ``actions`` are given and the module is in
        training mode; otherwise z = 0.
        """
        b = state.shape[0] if state is not None else images[0].shape[0]  # type: ignore[index]
        mu = log_var = None
        if self.cfg.use_vae and actions is not None and self.training:
            mu, log_var = self.encode_latent(state, actions, is_pad)
            z = mu + torch.exp(0.5 * log_var) * torch.randn_like(mu)
        else:
            z = torch.zeros(b, self.cfg.latent_dim, device=self.queries.weight.device)

        tokens = [(self.latent_proj(z) + self.token_pos.weight[0]).unsqueeze(1)]
        if self.state_proj is not None:
            tokens.append((self.state_proj(state) + self.token_pos.weight[1]).unsqueeze(1))
        for cam, img in enumerate(images or []):
            fmap = self.image_proj(self.backbone(img))  # (B, D, h, w)
            _, d, h, w = fmap.shape
            pos = sinusoidal_2d(h, w, d).to(fmap.device) + self.camera_embed.weight[cam]
            tokens.append(fmap.flatten(2).transpose(1, 2) + pos)
        memory = self.encoder(torch.cat(tokens, dim=1))

        queries = self.queries.weight.unsqueeze(0).expand(b, -1, -1)
        hidden = self.decoder(queries, memory)  # (B, H, D)
        out = torch.cat([self.heads[name](hidden) for name, _, _ in self.group_slices], dim=-1)
        return out, mu, log_var


def kl_divergence(mu: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(log var)) || N(0, I)) summed over latent dims, mean over the batch."""
    return (-0.5 * (1 + log_var - mu.pow(2) - log_var.exp())).sum(-1).mean()
