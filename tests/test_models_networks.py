"""Autoencoder and conditional FNO: shapes, periodicity, the spectral convolution against a direct DFT."""

from __future__ import annotations

import math

import pytest
import torch

from models.autoencoder import Autoencoder
from models.circular_conv import CircularConv2d, UpsampledConv2d
from models.fno import ConditionalFNO, SpectralConv2d


ARCHITECTURES = pytest.mark.parametrize("architecture", ["upsample", "subpixel"])


@ARCHITECTURES
def test_autoencoder_shapes_and_compression(architecture):
    ae = Autoencoder(channels=8, latent_channels=1, architecture=architecture)
    x = torch.randn(3, 1, 32, 32)
    z = ae.encode(x)
    assert z.shape == (3, 1, 8, 8)
    assert ae.decode(z).shape == x.shape and ae(x).shape == x.shape


@ARCHITECTURES
def test_autoencoder_commutes_with_periodic_shifts(architecture):
    """Circular padding: shifting the field by 4 cells shifts the latent by 1 cell, exactly."""
    torch.manual_seed(0)
    ae = Autoencoder(channels=8, architecture=architecture)
    x = torch.randn(2, 1, 16, 16, dtype=torch.float64)
    ae = ae.double()
    z = ae.encode(x)
    z_shift = ae.encode(torch.roll(x, shifts=(4, -8), dims=(-2, -1)))
    assert torch.allclose(z_shift, torch.roll(z, shifts=(1, -2), dims=(-2, -1)), atol=1e-12)
    rec = ae.decode(z)
    assert torch.allclose(ae.decode(torch.roll(z, 1, -1)), torch.roll(rec, 4, -1), atol=1e-12)


@ARCHITECTURES
def test_autoencoder_round_trip_learns_smooth_fields(architecture):
    """A hundred Adam steps reduce the round-trip error of smooth periodic fields well below 1."""
    torch.manual_seed(0)
    n = 16
    x = torch.arange(n) / n
    X, Y = torch.meshgrid(x, x, indexing="ij")
    amplitudes = torch.randn(32, 4)
    fields = (
        amplitudes[:, 0, None, None] * torch.sin(2 * math.pi * X)
        + amplitudes[:, 1, None, None] * torch.cos(2 * math.pi * Y)
        + amplitudes[:, 2, None, None] * torch.sin(2 * math.pi * (X + Y))
        + amplitudes[:, 3, None, None] * torch.cos(2 * math.pi * (X - Y))
    ).unsqueeze(1)
    ae = Autoencoder(channels=8, architecture=architecture)
    opt = torch.optim.Adam(ae.parameters(), lr=1e-2)

    def rel_error() -> float:
        with torch.no_grad():
            return float((ae(fields) - fields).norm() / fields.norm())

    before = rel_error()
    for _ in range(120):
        opt.zero_grad()
        loss = (ae(fields) - fields).pow(2).mean()
        loss.backward()
        opt.step()
    after = rel_error()
    assert before > 0.8 and after < 0.1, (before, after)  # measured ~0.03


def direct_spectral_conv(layer: SpectralConv2d, h: torch.Tensor) -> torch.Tensor:
    """The same map written with an explicit DFT matrix, mode by mode (slow reference)."""
    b, cin, nx, ny = h.shape
    weight = torch.view_as_complex(layer.weight).to(torch.complex128)
    i = torch.arange(nx, dtype=torch.float64)
    j = torch.arange(ny, dtype=torch.float64)
    out = torch.zeros(b, layer.out_channels, nx, ny, dtype=torch.float64)
    m = layer.modes
    for kx in list(range(m)) + list(range(-m, 0)):
        block, row = (0, kx) if kx >= 0 else (1, kx + m)
        for ky in range(m):
            phase = torch.exp(-2j * math.pi * (kx * i[:, None] / nx + ky * j[None, :] / ny))
            coeff = (h.to(torch.complex128) * phase).sum((-2, -1))  # [b, cin]
            mixed = torch.einsum("bi,io->bo", coeff, weight[block, :, :, row, ky])
            wave = torch.exp(2j * math.pi * (kx * i[:, None] / nx + ky * j[None, :] / ny))
            contribution = mixed[:, :, None, None] * wave / (nx * ny)
            # A y-mode ky > 0 stands for itself and its conjugate (-kx, -ky) in the real field.
            out += (2 if ky > 0 else 1) * contribution.real
    return out


def test_spectral_conv_matches_direct_dft():
    """rfft2 / einsum / irfft2 equals the explicit sum over the kept modes (float64)."""
    torch.manual_seed(0)
    layer = SpectralConv2d(2, 3, modes=3).double()
    with torch.no_grad():
        layer.weight.normal_()  # general complex weights; on the k_y = 0 column irfft2 keeps the real part
    h = torch.randn(2, 2, 12, 12, dtype=torch.float64)
    fast = layer(h)
    assert fast.shape == (2, 3, 12, 12)
    ref = direct_spectral_conv(layer, h)
    assert torch.allclose(fast, ref, atol=1e-9)


def test_spectral_conv_removes_modes_above_cutoff():
    layer = SpectralConv2d(1, 1, modes=2).double()
    n = 16
    x = torch.arange(n, dtype=torch.float64) / n
    high = torch.cos(2 * math.pi * 5 * x)[:, None] * torch.cos(2 * math.pi * 3 * x)[None, :]
    assert layer(high[None, None]).abs().max().item() < 1e-12


def test_conditional_fno_shapes_and_translation_equivariance():
    torch.manual_seed(0)
    net = ConditionalFNO(target_channels=1, condition_channels=1, width=8, modes=4, layers=2).double()
    x = torch.randn(3, 1, 16, 16, dtype=torch.float64)
    c = torch.randn(3, 1, 16, 16, dtype=torch.float64)
    t = torch.rand(3, dtype=torch.float64)
    out = net(x, t, net.encode_condition(c))
    assert out.shape == x.shape
    shifted = net(torch.roll(x, 3, -1), t, net.encode_condition(torch.roll(c, 3, -1)))
    assert torch.allclose(shifted, torch.roll(out, 3, -1), atol=1e-10)
    # The condition branch matters and so does the time.
    assert not torch.allclose(net(x, t, net.encode_condition(-c)), out)
    assert not torch.allclose(net(x, t + 0.3, net.encode_condition(c)), out)


def _fno_by_the_formula(net: ConditionalFNO, x, t, c):
    """``h <- act(K_l h + W_l h + E_l(t) + M_l(c))`` with each module called on its own."""
    c = net.lift_condition(c)
    merged = []
    for spectral, local, merge in zip(net.condition_spectral, net.condition_pointwise, net.merge):
        c = net.act(spectral(c) + local(c))
        merged.append(merge(c))
    embedding = net.embed(t)
    h = net.lift_target(x)
    for spectral, local, dense, m in zip(net.target_spectral, net.target_pointwise, net.time_dense, merged):
        h = net.act(spectral(h) + local(h) + dense(embedding)[:, :, None, None] + m)
    return net.project(h)


@pytest.mark.parametrize("n", [8, 20])  # the DFT-matrix path (8^2 <= 256 points) and the rfft2 path
def test_conditional_fno_accumulating_products_equal_the_formula(n):
    """The fused sums (products accumulating in place) give the formula's values and gradients."""
    torch.manual_seed(2)
    net = ConditionalFNO(target_channels=2, condition_channels=3, width=6, modes=4, layers=2).double()
    x = torch.randn(3, 2, n, n, dtype=torch.float64, requires_grad=True)
    c = torch.randn(3, 3, n, n, dtype=torch.float64)
    t = torch.rand(3, dtype=torch.float64)
    fused, plain = net(x, t, net.encode_condition(c)), _fno_by_the_formula(net, x, t, c)
    torch.testing.assert_close(fused, plain, rtol=1e-12, atol=1e-12)
    weights = (x, net.target_pointwise[0].weight, net.target_pointwise[0].bias, net.condition_spectral[1].weight)
    for new, ref in zip(torch.autograd.grad(fused.sin().sum(), weights), torch.autograd.grad(plain.sin().sum(), weights)):
        torch.testing.assert_close(new, ref, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("n", [8, 12])
def test_spectral_conv_clips_modes_to_small_grids(n):
    layer = SpectralConv2d(1, 2, modes=6)
    assert layer(torch.randn(1, 1, n, n)).shape == (1, 2, n, n)


@pytest.mark.parametrize(("n", "modes"), [(8, 4), (6, 4), (12, 3), (16, 8)])
def test_dft_matrix_path_equals_fft_path(n, modes):
    """Small grids use explicit DFT matrices; values and gradients equal the rfft2 path (float64)."""
    torch.manual_seed(0)
    layer = SpectralConv2d(3, 4, modes).double()
    with torch.no_grad():
        layer.weight.normal_()
    h = torch.randn(2, 3, n, n, dtype=torch.float64, requires_grad=True)
    dft, fft = layer._forward_dft(h), layer._forward_fft(h)
    assert torch.allclose(dft, fft, atol=1e-12)
    (g_dft,) = torch.autograd.grad((dft**2).sum(), layer.weight)
    (g_fft,) = torch.autograd.grad((fft**2).sum(), layer.weight)
    assert torch.allclose(g_dft, g_fft, atol=1e-10)


def _reference_conv(conv: torch.nn.Conv2d) -> torch.nn.Conv2d:
    """A plain ``nn.Conv2d`` (circular) with ``conv``'s parameters."""
    plain = torch.nn.Conv2d(conv.in_channels, conv.out_channels, 3, stride=conv.stride, padding=1,
                            padding_mode="circular").to(conv.weight.dtype)
    plain.load_state_dict(conv.state_dict())
    return plain


@pytest.mark.parametrize("out_channels, stride, shape", [(1, 1, (6, 10)), (3, 1, (8, 8)), (5, 2, (8, 12))])
def test_circular_conv_is_the_plain_convolution(out_channels, stride, shape):
    """Values and weight gradients, the tap-sum path (1 output channel) and F.conv2d alike."""
    torch.manual_seed(0)
    conv = CircularConv2d(4, out_channels, stride).double()
    plain = _reference_conv(conv)
    h = torch.randn(3, 4, *shape, dtype=torch.float64)
    torch.testing.assert_close(conv(h), plain(h), rtol=1e-12, atol=1e-12)
    conv(h).square().sum().backward()
    plain(h).square().sum().backward()
    torch.testing.assert_close(conv.weight.grad, plain.weight.grad, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("out_channels, shape", [(1, (4, 4)), (3, (5, 7))])
def test_upsampled_conv_is_nearest_upsampling_then_the_convolution(out_channels, shape):
    torch.manual_seed(1)
    conv = UpsampledConv2d(2, out_channels).double()
    plain = torch.nn.Sequential(torch.nn.Upsample(scale_factor=2, mode="nearest"), _reference_conv(conv))
    h = torch.randn(2, 2, *shape, dtype=torch.float64, requires_grad=True)
    torch.testing.assert_close(conv(h), plain(h), rtol=1e-12, atol=1e-12)
    grad_new = torch.autograd.grad(conv(h).sin().sum(), (h, conv.weight))
    grad_ref = torch.autograd.grad(plain(h).sin().sum(), (h, plain[1].weight))
    for new, ref in zip(grad_new, grad_ref):
        torch.testing.assert_close(new, ref, rtol=1e-10, atol=1e-10)
    with torch.inference_mode():  # the channels-last sampling path
        sampled = conv(h)
        torch.testing.assert_close(sampled, plain(h), rtol=1e-12, atol=1e-12)
    assert sampled.is_contiguous(memory_format=torch.channels_last)


def test_circular_conv_trains_after_sampling_under_inference_mode():
    """The padding's cached index, first built under inference mode, still serves autograd."""
    conv = CircularConv2d(3, 4)
    h = torch.randn(2, 3, 7, 5)
    with torch.inference_mode():
        conv(h)
    conv(h).square().sum().backward()
    assert conv.weight.grad is not None
