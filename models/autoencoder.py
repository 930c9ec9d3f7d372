"""Deterministic convolutional autoencoders: ``[B, 1, n, n]`` <-> latent ``[B, L, n/4, n/4]``.

Two designs of the same map (the paper's 64^2 -> 16^2, one latent channel = 16x compression):

* ``upsample``: two stride-2 convolution stages down; up, nearest upsampling followed by a
  convolution at 2x and 4x the latent resolution (the paper's layout; transposed convolutions
  take a slow path on CPU, so upsample + convolution replaces them; the pair is computed at the
  low resolution, :class:`~models.circular_conv.UpsampledConv2d`);
* ``subpixel``: every convolution at the latent resolution. The encoder folds each 4x4 block
  of the field into 16 channels (space-to-depth, ``PixelUnshuffle``); the decoder's last
  convolution emits 16 channels that unfold into the 4x4 blocks (``PixelShuffle``, Shi et al.
  2016). At the same width it costs ~1/16 of the convolutions at full resolution, which
  dominate the ``upsample`` decoder.

Every 3x3 convolution is a :class:`~models.circular_conv.CircularConv2d` (circular padding), so the latent of a periodic field is periodic (a shift
of the field by 4 cells shifts the latent by one) and a spectral (FNO) network can act on it.
"""

from __future__ import annotations

import torch
from torch import nn

from models.circular_conv import CircularConv2d, UpsampledConv2d
from models.config import Architecture

ARCHITECTURES: tuple[str, ...] = ("upsample", "subpixel")
FACTOR = 4  # n -> n / 4 per direction


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return CircularConv2d(cin, cout, stride)


def encoder_layers(architecture: Architecture, channels: int, latent_channels: int) -> nn.Sequential:
    """``[B, 1, n, n]`` -> ``[B, latent_channels, n/4, n/4]`` (n divisible by 4)."""
    if architecture == "subpixel":
        return nn.Sequential(
            nn.PixelUnshuffle(FACTOR),
            _conv(FACTOR**2, channels), nn.SiLU(),
            _conv(channels, channels), nn.SiLU(),
            _conv(channels, channels), nn.SiLU(),
            nn.Conv2d(channels, latent_channels, 1),
        )
    return nn.Sequential(
        _conv(1, channels), nn.SiLU(),
        _conv(channels, channels, stride=2), nn.SiLU(),
        _conv(channels, channels, stride=2), nn.SiLU(),
        _conv(channels, channels), nn.SiLU(),
        nn.Conv2d(channels, latent_channels, 1),
    )


def decoder_layers(architecture: Architecture, channels: int, latent_channels: int) -> nn.Sequential:
    """``[B, latent_channels, m, m]`` -> ``[B, 1, 4m, 4m]``."""
    if architecture == "subpixel":
        return nn.Sequential(
            _conv(latent_channels, channels), nn.SiLU(),
            _conv(channels, channels), nn.SiLU(),
            _conv(channels, channels), nn.SiLU(),
            _conv(channels, FACTOR**2),
            nn.PixelShuffle(FACTOR),
        )
    # Nearest x2 upsampling is fused into the convolution after it (UpsampledConv2d, the same
    # map); the Identity layers keep the layer indices, hence the checkpoint keys, of that layout.
    return nn.Sequential(
        _conv(latent_channels, channels), nn.SiLU(),
        nn.Identity(),
        UpsampledConv2d(channels, channels), nn.SiLU(),
        nn.Identity(),
        UpsampledConv2d(channels, channels), nn.SiLU(),
        _conv(channels, 1),
    )


class Stage(nn.Module):
    """One half of an autoencoder: its layers under ``net`` (the checkpoint keys ``encoder.net.*``
    and ``decoder.net.*`` of every saved model)."""

    def __init__(self, layers: nn.Sequential) -> None:
        super().__init__()
        self.net = layers

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Autoencoder(nn.Module):
    """Encoder + decoder pair for one field (the closure term or the vorticity).

    Args:
        channels: hidden channels (sets cost; 16 is light, the paper's are ~4.5 M parameters).
        latent_channels: channels of the ``n/4 x n/4`` latent.
        architecture: ``upsample`` or ``subpixel`` (module docstring).
    """

    def __init__(self, channels: int = 16, latent_channels: int = 1, architecture: Architecture = "upsample") -> None:
        super().__init__()
        if architecture not in ARCHITECTURES:
            raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {architecture!r}")
        self.architecture = architecture
        self.encoder = Stage(encoder_layers(architecture, channels, latent_channels))
        self.decoder = Stage(decoder_layers(architecture, channels, latent_channels))

    def encode(self, field: torch.Tensor) -> torch.Tensor:
        return self.encoder(field)

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        return self.decoder(latent)

    def forward(self, field: torch.Tensor) -> torch.Tensor:
        """Reconstruction ``D(E(field))``, same shape as ``field``."""
        return self.decode(self.encode(field))
