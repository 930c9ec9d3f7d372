"""Batched pseudo-spectral 2D vorticity solver, filters, classical closures and datasets.

Tensors are ``[members, N, N]`` with ``w[..., i, j]`` the value at ``(x, y) = (i/N, j/N)``
on the periodic unit square. Nothing here imports :mod:`models` or :mod:`ensemble`.
"""
