"""Circular 3x3 convolutions of the autoencoders, in the forms that are fast on CPU.

Both classes are ``nn.Conv2d`` (kernel 3, padding 1, circular) with the same parameters, so
checkpoints load unchanged and the maps are the same to float rounding:

* :class:`CircularConv2d` pads in channels-last layout and convolves there
  (:func:`_pad_channels_last`): oneDNN convolves channels-last input natively, and the padding
  gathers whole ``C``-vectors instead of copying rows of ``W`` values. For the subpixel
  autoencoders' 32 -> 32 channels on 100 x 8^2 bfloat16 fields, pad and convolution take 0.70
  against 0.84 ms (the padding alone 29 against 166 us).
  Its output stays channels-last, so the next convolution pads without a layout change.
  A convolution with **one output channel** is instead one channel product per tap followed
  by nine shifted sums,

      y(p) = b + sum_{d in {-1,0,1}^2} (W_d h)(p + d),

  because oneDNN's direct path for a single output channel is ~6x slower here (16 -> 1 channels
  on 100 x 32^2 fields: 8 ms against 1.2 ms); other shapes use ``F.conv2d``.
* :class:`UpsampledConv2d` is nearest x2 upsampling followed by the convolution, computed at the
  low resolution. Output pixel ``(2i + a, 2j + b)`` sees low-resolution rows ``i - 1, i`` (phase
  ``a = 0``: taps ``W_{-1}`` and ``W_0 + W_1``) or ``i, i + 1`` (``a = 1``: ``W_{-1} + W_0`` and
  ``W_1``), and likewise for columns. So one 2x2 convolution of the circularly padded input to
  ``4 x out`` phase channels, interleaved, gives the result: 16 instead of 36 multiply-adds per
  output pixel and no upsampled copy (16 -> 16 channels, 100 x 16^2 -> 32^2: 12 ms against 5 ms).
  Without autograd (sampling) it pads and convolves channels-last, so that the interleave copies
  whole ``out``-vectors (64-byte rows for 16 channels) instead of single values with a stride of
  2: 16 -> 16 channels, 100 x 16^2 -> 32^2 take 8.6 against 15.1 ms on an AVX2 core (medians;
  6.5 against 9.7 ms at best), and the upsample flow student's decoder 16.8 against 22.7 ms.
"""

from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import nn


def _pad(h: torch.Tensor) -> torch.Tensor:
    return F.pad(h, (1, 1, 1, 1), mode="circular")


def _pad_channels_last(h: torch.Tensor) -> torch.Tensor:
    """Circular padding by one cell, ``[B, C, H, W] -> [B, C, H + 2, W + 2]`` in channels-last
    memory: ``h[..., (i - 1) mod H, (j - 1) mod W]``, the map of ``_pad``, as one gather of whole
    ``C``-vectors from the ``[B, H W, C]`` view."""
    batch, channels, height, width = h.shape
    nhwc = h.contiguous(memory_format=torch.channels_last).permute(0, 2, 3, 1).reshape(batch, height * width, channels)
    padded = nhwc.index_select(1, _padded_cells(height, width, h.device))
    return padded.view(batch, height + 2, width + 2, channels).permute(0, 3, 1, 2)


@lru_cache(maxsize=32)
def _padded_cells(height: int, width: int, device: torch.device) -> torch.Tensor:
    """Flat cell ``((i - 1) mod H) W + (j - 1) mod W`` of each padded cell ``(i, j)``: ``[(H + 2)(W + 2)]``
    (a normal tensor even if first asked for under inference mode: training reuses it)."""
    with torch.inference_mode(False):
        rows = torch.arange(-1, height + 1, device=device) % height
        cols = torch.arange(-1, width + 1, device=device) % width
        return (rows[:, None] * width + cols[None, :]).reshape(-1)


class CircularConv2d(nn.Conv2d):
    """``nn.Conv2d(in, out, 3, stride, padding=1, padding_mode="circular")``:
    ``[B, in, H, W] -> [B, out, H / stride, W / stride]``."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__(in_channels, out_channels, 3, stride=stride, padding=1, padding_mode="circular")

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if self.out_channels == 1 and self.stride == (1, 1):
            return self._tap_sum(h)
        return F.conv2d(_pad_channels_last(h), self.weight, self.bias, self.stride)

    def _tap_sum(self, h: torch.Tensor) -> torch.Tensor:
        """``b + sum_d shift_d(W_d h)``: one batched product ``[9 out, in] @ [in, H W]``, nine sums."""
        batch, cin, height, width = h.shape
        out = self.out_channels
        taps = self.weight.permute(2, 3, 0, 1).reshape(9 * out, cin)  # tap-major (row offset, column offset)
        per_tap = torch.bmm(taps.expand(batch, -1, -1), h.reshape(batch, cin, height * width))
        padded = _pad(per_tap.view(batch, 9 * out, height, width)).view(batch, 3, 3, out, height + 2, width + 2)
        y = padded[:, 0, 0, :, :height, :width] + self.bias.view(1, out, 1, 1)
        for row in range(3):
            for col in range(3):
                if row or col:
                    y = y + padded[:, row, col, :, row : row + height, col : col + width]
        return y


class UpsampledConv2d(CircularConv2d):
    """Nearest x2 upsampling, then the circular convolution: ``[B, in, H, W] -> [B, out, 2H, 2W]``."""

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        height, width = h.shape[-2:]
        if torch.is_grad_enabled():
            return self._interleaved(F.conv2d(_pad(h), self._phase_weight(), self.bias.repeat(4)), height, width)
        phases = F.conv2d(_pad_channels_last(h), self._phase_weight(), self.bias.repeat(4))
        return self._interleaved_channels_last(phases, height, width)

    def _interleaved(self, phases: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """``[B, 4 out, H + 1, W + 1]`` phases (NCHW) -> ``[B, out, 2H, 2W]``: output pixel
        ``(2i + a, 2j + b)`` is phase ``(a, b)`` at ``(i + a, j + b)``. Under autograd this form is
        the cheaper one (a training step of the upsample autoencoder 10-20 % faster than
        channels-last's)."""
        batch, out = phases.shape[0], self.out_channels
        phases = phases.view(batch, 2, 2, out, height + 1, width + 1)
        y = phases.new_empty(batch, out, height, 2, width, 2)
        for a in (0, 1):
            for b in (0, 1):
                y[:, :, :, a, :, b] = phases[:, a, b, :, a : a + height, b : b + width]
        return y.view(batch, out, 2 * height, 2 * width)

    def _interleaved_channels_last(self, phases: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """The same from channels-last phases, into a channels-last output: each copy moves whole
        ``out``-vectors (the sampling path, module docstring)."""
        batch, out = phases.shape[0], self.out_channels
        phases = phases.permute(0, 2, 3, 1).view(batch, height + 1, width + 1, 2, 2, out)  # (a, b, out) fastest
        y = phases.new_empty(batch, height, 2, width, 2, out)  # y[:, i, a, j, b] is output pixel (2i + a, 2j + b)
        for a in (0, 1):
            for b in (0, 1):
                y[:, :, a, :, b] = phases[:, a : a + height, b : b + width, a, b]
        return y.view(batch, 2 * height, 2 * width, out).permute(0, 3, 1, 2)

    def _phase_weight(self) -> torch.Tensor:
        """``[4 out, in, 2, 2]``: the 3x3 taps collapsed per output phase ``(a, b)``, ``a`` major."""
        rows = [_collapse(self.weight, 2, phase) for phase in (0, 1)]
        return torch.cat([_collapse(r, 3, phase) for r in rows for phase in (0, 1)], dim=0)


def _collapse(weight: torch.Tensor, dim: int, phase: int) -> torch.Tensor:
    """Three taps along ``dim`` -> the two a nearest-upsampled phase sees: ``[w0, w1 + w2]``
    (phase 0, offsets -1, 0) or ``[w0 + w1, w2]`` (phase 1, offsets 0, +1)."""
    w0, w1, w2 = weight.unbind(dim)
    return torch.stack([w0, w1 + w2] if phase == 0 else [w0 + w1, w2], dim)
