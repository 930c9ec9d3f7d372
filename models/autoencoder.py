"""Light deterministic convolutional autoencoder: ``[B, 1, n, n]`` <-> latent ``[B, L, n/4, n/4]``.

Two stride-2 stages (the paper's 64^2 -> 16^2, one latent channel = 16x compression).
Every convolution uses circular padding, so the latent of a periodic field is periodic and a
spectral (FNO) network can act on it. The decoder upsamples (nearest) and convolves instead
of using transposed convolutions, which take a slow path on CPU.
"""

from __future__ import annotations

import torch
from torch import nn


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, padding_mode="circular")


class Encoder(nn.Module):
    """``[B, 1, n, n]`` -> ``[B, latent_channels, n/4, n/4]`` (n divisible by 4)."""

    def __init__(self, channels: int = 16, latent_channels: int = 1) -> None:
        super().__init__()
        self.net = nn.Sequential(
            _conv(1, channels),
            nn.SiLU(),
            _conv(channels, channels, stride=2),
            nn.SiLU(),
            _conv(channels, channels, stride=2),
            nn.SiLU(),
            _conv(channels, channels),
            nn.SiLU(),
            nn.Conv2d(channels, latent_channels, 1),
        )

    def forward(self, field: torch.Tensor) -> torch.Tensor:
        return self.net(field)


class Decoder(nn.Module):
    """``[B, latent_channels, m, m]`` -> ``[B, 1, 4m, 4m]``: conv, two (upsample x2, conv) stages, conv."""

    def __init__(self, channels: int = 16, latent_channels: int = 1) -> None:
        super().__init__()
        self.net = nn.Sequential(
            _conv(latent_channels, channels),
            nn.SiLU(),
            nn.Upsample(scale_factor=2, mode="nearest"),
            _conv(channels, channels),
            nn.SiLU(),
            nn.Upsample(scale_factor=2, mode="nearest"),
            _conv(channels, channels),
            nn.SiLU(),
            _conv(channels, 1),
        )

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        return self.net(latent)


class Autoencoder(nn.Module):
    """Encoder + decoder pair for one field (the closure term or the vorticity).

    Args:
        channels: hidden channels (sets cost; 16 is light, the paper's are ~4.5 M parameters).
        latent_channels: channels of the ``n/4 x n/4`` latent.
    """

    def __init__(self, channels: int = 16, latent_channels: int = 1) -> None:
        super().__init__()
        self.encoder = Encoder(channels, latent_channels)
        self.decoder = Decoder(channels, latent_channels)

    def encode(self, field: torch.Tensor) -> torch.Tensor:
        return self.encoder(field)

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        return self.decoder(latent)

    def forward(self, field: torch.Tensor) -> torch.Tensor:
        """Reconstruction ``D(E(field))``, same shape as ``field``."""
        return self.decode(self.encode(field))
