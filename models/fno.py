"""Conditional Fourier neural operator: the score / velocity network of every closure.

Two branches (Dong, Yang & Wu 2025, after Li et al. 2021):

* the **condition branch** lifts the condition field (coarse vorticity or its latent) and runs
  spectral layers once per sample; each target layer receives a 1x1-conv projection of it;
* the **target branch** lifts the noisy target, adds a Gaussian-Fourier embedding of the
  diffusion (or flow) time, and runs spectral layers

      h <- act( K_l h + W_l h + E_l(t) + M_l(c) )

  with ``K_l`` a spectral convolution, ``W_l`` and ``M_l`` 1x1 convolutions and ``E_l`` a
  dense map of the time embedding. The condition terms ``M_l(c)`` do not depend on the
  target or the time, so :meth:`ConditionalFNO.encode_condition` computes them once and a
  sampler reuses them at every step.

All fields are periodic, so no padding is used.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class SpectralConv2d(nn.Module):
    """Fourier-space linear map on the lowest modes: ``(K h)^ (k) = R(k) h^(k)`` for ``|k_x|, k_y < modes``.

    Args:
        in_channels, out_channels: channels of the input ``[B, in, nx, ny]`` and output
            ``[B, out, nx, ny]``.
        modes: Fourier modes kept per direction (``k_x`` in ``[-modes, modes)`` clipped to
            the grid, ``k_y`` in ``[0, modes)``); higher modes are zeroed.
        dft_max_points: grids with at most this many points use explicit DFT matrices
            (two small matmuls each way) instead of ``rfft2``/``irfft2``: the same map, but
            FFT calls on tiny grids (the 8^2 or 16^2 latents) are dominated by overhead.

    The weights ``R`` are complex ``[2, in, out, modes, modes]`` (block 0: ``k_x >= 0``,
    block 1: ``k_x < 0``), stored as a real tensor with a trailing dimension 2 so that the
    safetensors checkpoint holds only real arrays.
    """

    def __init__(self, in_channels: int, out_channels: int, modes: int, dft_max_points: int = 256) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.modes = in_channels, out_channels, modes
        self.dft_max_points = dft_max_points
        scale = 1.0 / (in_channels * out_channels)
        self.weight = nn.Parameter(scale * torch.rand(2, in_channels, out_channels, modes, modes, 2))
        self._bases: dict[tuple, tuple[torch.Tensor, ...]] = {}
        self._mixing_cache: tuple[tuple, torch.Tensor] | None = None

    def _kept(self, nx: int, ny: int) -> tuple[int, int]:
        return min(self.modes, nx // 2), min(self.modes, ny // 2 + 1)

    def forward(self, h: torch.Tensor, add_to: torch.Tensor | None = None) -> torch.Tensor:
        """``[B, in, nx, ny]`` -> ``[B, out, nx, ny]``: ``K h``, or ``add_to + K h`` written into
        ``add_to`` (a fresh ``[B, out, nx, ny]`` tensor; on the DFT path the sum is the inverse
        product's accumulation, no separate addition)."""
        nx, ny = h.shape[-2:]
        if nx * ny <= self.dft_max_points:
            return self._forward_dft(h, add_to)
        out = self._forward_fft(h)
        return out if add_to is None else add_to.add_(out)

    def _forward_fft(self, h: torch.Tensor) -> torch.Tensor:
        nx, ny = h.shape[-2:]
        mx, my = self._kept(nx, ny)
        h_hat = torch.fft.rfft2(h)
        weight = torch.view_as_complex(self.weight)
        out_hat = torch.zeros(h.shape[0], self.out_channels, nx, ny // 2 + 1, dtype=h_hat.dtype, device=h.device)
        out_hat[:, :, :mx, :my] = torch.einsum("bixy,ioxy->boxy", h_hat[:, :, :mx, :my], weight[0, :, :, :mx, :my])
        out_hat[:, :, nx - mx :, :my] = torch.einsum(
            "bixy,ioxy->boxy", h_hat[:, :, nx - mx :, :my], weight[1, :, :, :mx, :my]
        )
        return torch.fft.irfft2(out_hat, s=(nx, ny))

    def _basis(self, nx: int, ny: int, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """Real DFT matrices for the kept modes ``K = 2 mx * my``.

        Forward ``[2K, nx ny]``: ``[cos; -sin]`` of ``2 pi k.x`` (real and imaginary parts of the
        coefficients). Inverse ``[2K, nx ny]``: ``[cos; -sin] c_ky / (nx ny)`` with ``c = 1`` for
        ``k_y = 0`` or Nyquist and 2 otherwise, i.e. ``Re(sum_k c_ky X_k exp(2 pi i k.x))``: the
        real inverse of a half spectrum, as ``irfft2`` computes it.
        """
        key = (nx, ny, device, dtype)
        if key not in self._bases:
            mx, my = self._kept(nx, ny)
            kx = torch.tensor(list(range(mx)) + list(range(nx - mx, nx)), dtype=torch.float64)
            ky = torch.arange(my, dtype=torch.float64)
            i = torch.arange(nx, dtype=torch.float64)
            j = torch.arange(ny, dtype=torch.float64)
            phase = 2 * math.pi * (
                (kx[:, None, None, None] * i[None, None, :, None]) / nx + (ky[None, :, None, None] * j[None, None, None, :]) / ny
            ).reshape(len(kx) * my, nx * ny)  # [K, N]
            nyquist_or_mean = (ky == 0) | (2 * ky == ny)
            weight_y = (2.0 - nyquist_or_mean.double()).repeat(len(kx))[:, None] / (nx * ny)
            forward = torch.cat([torch.cos(phase), -torch.sin(phase)], dim=0)  # [2K, N]
            inverse = torch.cat([weight_y * torch.cos(phase), -weight_y * torch.sin(phase)], dim=0)  # [2K, N]
            self._bases[key] = (forward.to(device=device, dtype=dtype).contiguous(), inverse.to(device=device, dtype=dtype).contiguous())
        return self._bases[key]

    def _mixing_matrix(self, mx: int, my: int) -> torch.Tensor:
        """Per-mode channel mixing as the real block matrix ``[[R, S], [-S, R]]``, ``[K, 2 in, 2 out]``
        (``R + iS`` the complex weight): ``[a | b] @ it = [aR - bS | aS + bR]``, the real and
        imaginary parts of ``(a + ib)(R + iS)``.

        Weights do not change without autograd, so the matrix is cached then (keyed by the
        weight's version counter, which every in-place update bumps).
        """
        key = (mx, my, self.weight._version, self.weight.dtype, self.weight.device)
        if not torch.is_grad_enabled() and self._mixing_cache is not None and self._mixing_cache[0] == key:
            return self._mixing_cache[1]
        kept = torch.cat([self.weight[0, :, :, :mx, :my], self.weight[1, :, :, :mx, :my]], dim=2)  # [in, out, 2mx, my, 2]
        kept = kept.reshape(self.in_channels, self.out_channels, -1, 2).permute(2, 0, 1, 3)  # [K, in, out, 2]
        real, imag = kept[..., 0], kept[..., 1]
        matrix = torch.cat([torch.cat([real, imag], dim=2), torch.cat([-imag, real], dim=2)], dim=1).contiguous()
        if not torch.is_grad_enabled():
            self._mixing_cache = (key, matrix)
        return matrix

    def _forward_dft(self, h: torch.Tensor, add_to: torch.Tensor | None = None) -> torch.Tensor:
        """DFT-matrix path: ``a + ib = F h`` per mode, ``(a + ib)(R + iS)``, real inverse.

        Laid out for few, large matrix products: the forward DFT is one ``[2K, N] @ [N, B in]``
        product (transposed operand, no copy); ``[a | b]`` per mode, ``[K, B, 2 in]``, times the
        block mixing matrix gives ``[Re | Im]`` in one batched product; rewritten part- and
        mode-major, the inverse is again one product with a transposed operand.
        """
        b, cin, nx, ny = h.shape
        mx, my = self._kept(nx, ny)
        forward, inverse = self._basis(nx, ny, h.device, h.dtype)  # [2K, N], [2K, N]
        k, cout = 2 * mx * my, self.out_channels
        coef = torch.mm(forward, h.reshape(b * cin, nx * ny).T).view(2, k, b, cin)  # (re, im) x K x B x in
        mixed = torch.bmm(torch.cat([coef[0], coef[1]], dim=2), self._mixing_matrix(mx, my))  # [K, B, 2 out]
        mixed = mixed.view(k, b, 2, cout).permute(2, 0, 1, 3).reshape(2 * k, b * cout)  # (re, im) x K, B out
        if add_to is None:
            return torch.mm(mixed.T, inverse).view(b, cout, nx, ny)
        add_to.view(b * cout, nx * ny).addmm_(mixed.T, inverse)
        return add_to

def pointwise(conv: nn.Conv2d, h: torch.Tensor) -> torch.Tensor:
    """A 1x1 convolution as one batched product ``W h + b``: ``[B, in, nx, ny] -> [B, out, nx, ny]``.

    The same map as ``conv(h)``; oneDNN's 1x1 convolution is 2-3x slower than this on CPU for
    the FNO's small channel counts.
    """
    b, cin, nx, ny = h.shape
    weight = conv.weight.view(conv.out_channels, cin)
    out = torch.baddbmm(conv.bias[None, :, None], weight.expand(b, -1, -1), h.reshape(b, cin, nx * ny))
    return out.view(b, conv.out_channels, nx, ny)


def add_pointwise_(accumulator: torch.Tensor, conv: nn.Conv2d, h: torch.Tensor) -> torch.Tensor:
    """``accumulator += W h`` in place, the 1x1 convolution's product without its bias (the
    caller folds ``b`` into ``accumulator``): ``[B, out, nx, ny]``, ``h [B, in, nx, ny]``."""
    b, cin, nx, ny = h.shape
    weight = conv.weight.view(conv.out_channels, cin)
    accumulator.view(b, conv.out_channels, nx * ny).baddbmm_(weight.expand(b, -1, -1), h.reshape(b, cin, nx * ny))
    return accumulator


class GaussianFourierEmbedding(nn.Module):
    """``t -> [sin(2 pi W t), cos(2 pi W t)]`` with fixed ``W ~ N(0, scale^2)``: ``[B] -> [B, dim]``."""

    def __init__(self, dim: int, scale: float = 30.0) -> None:
        super().__init__()
        self.register_buffer("frequencies", torch.randn(dim // 2) * scale)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        angle = 2 * math.pi * t[:, None] * self.frequencies[None, :]
        return torch.cat([torch.sin(angle), torch.cos(angle)], dim=-1)


class ConditionalFNO(nn.Module):
    """Conditional FNO ``f(x, t, c)``: target ``[B, Cx, n, n]``, time ``[B]``, condition ``[B, Cc, n, n]``.

    Args:
        target_channels: channels ``Cx`` of the target (and of the output).
        condition_channels: channels ``Cc`` of the condition.
        width: hidden channels of both branches.
        modes: Fourier modes per direction of every spectral layer.
        layers: spectral layers per branch.
        embedding_scale: std of the Gaussian-Fourier time frequencies.
    """

    def __init__(
        self,
        target_channels: int = 1,
        condition_channels: int = 1,
        width: int = 20,
        modes: int = 4,
        layers: int = 4,
        embedding_scale: float = 30.0,
    ) -> None:
        super().__init__()
        self.width, self.modes, self.layers = width, modes, layers
        self.embed = nn.Sequential(GaussianFourierEmbedding(width, embedding_scale), nn.Linear(width, width), nn.SiLU())
        self.lift_target = nn.Conv2d(target_channels, width, 1)
        self.lift_condition = nn.Conv2d(condition_channels, width, 1)
        self.target_spectral = nn.ModuleList(SpectralConv2d(width, width, modes) for _ in range(layers))
        self.target_pointwise = nn.ModuleList(nn.Conv2d(width, width, 1) for _ in range(layers))
        self.time_dense = nn.ModuleList(nn.Linear(width, width) for _ in range(layers))
        self.condition_spectral = nn.ModuleList(SpectralConv2d(width, width, modes) for _ in range(layers))
        self.condition_pointwise = nn.ModuleList(nn.Conv2d(width, width, 1) for _ in range(layers))
        self.merge = nn.ModuleList(nn.Conv2d(width, width, 1) for _ in range(layers))
        self.project = nn.Sequential(nn.Conv2d(width, 2 * width, 1), nn.GELU(), nn.Conv2d(2 * width, target_channels, 1))
        self.act = nn.GELU()

    def encode_condition(self, condition: torch.Tensor) -> list[torch.Tensor]:
        """Condition branch, run once per sample: ``[B, Cc, n, n]`` -> ``layers`` x ``[B, width, n, n]``."""
        c = pointwise(self.lift_condition, condition)
        merged = []
        for spectral, local, merge in zip(self.condition_spectral, self.condition_pointwise, self.merge):
            c = self.act(spectral(c, add_to=pointwise(local, c)))
            merged.append(pointwise(merge, c))
        return merged

    def forward(self, x: torch.Tensor, t: torch.Tensor, condition_features: list[torch.Tensor]) -> torch.Tensor:
        """Target branch: ``x [B, Cx, n, n]``, ``t [B]`` -> ``[B, Cx, n, n]`` (features from :meth:`encode_condition`)."""
        embedding = self.embed(t)
        h = pointwise(self.lift_target, x)
        for spectral, local, dense, cond in zip(
            self.target_spectral, self.target_pointwise, self.time_dense, condition_features
        ):
            shift = cond + (dense(embedding) + local.bias)[:, :, None, None]  # M_l(c) + E_l(t) + b_l: [B, width, n, n]
            h = self.act(spectral(h, add_to=add_pointwise_(shift, local, h)))  # the sums accumulate in the products
        hidden, activation, out = self.project
        return pointwise(out, activation(pointwise(hidden, h)))
