"""Per-member random streams that do not depend on how members are batched.

Member ``m`` of an ensemble owns an integer seed. Every draw it makes is keyed by
``(seed_m, *key, call_index)`` and hashed (splitmix64) into a fresh generator, so a member's
noise is the same whether it runs alone, in a batch of 64, or in a batch gathered across
actors by a shared closure. Objects are tiny (a tuple of ints) and pickle cheaply for Ray.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

_MASK = (1 << 64) - 1


def mix_seed(*values: int) -> int:
    """Hash integers into a 63-bit seed with splitmix64 (order-sensitive, deterministic)."""
    state = 0x9E3779B97F4A7C15
    for v in values:
        state = (state ^ (int(v) & _MASK)) & _MASK
        state = (state + 0x9E3779B97F4A7C15) & _MASK
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
        state = z ^ (z >> 31)
    return state >> 1


def mix_seeds(first: Sequence[int], *values: int) -> list[int]:
    """``[mix_seed(f, *values) for f in first]``, vectorised: the same splitmix64 rounds on a
    uint64 array (wrapping arithmetic), ~10x faster for 100 members."""
    with np.errstate(over="ignore"):
        state = np.full(len(first), 0x9E3779B97F4A7C15, dtype=np.uint64)
        for value in (np.array([int(f) & _MASK for f in first], dtype=np.uint64), *values):
            state ^= np.uint64(int(value) & _MASK) if np.isscalar(value) else value
            state += np.uint64(0x9E3779B97F4A7C15)
            z = state
            z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
            z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
            state = z ^ (z >> np.uint64(31))
    return (state >> np.uint64(1)).tolist()


def member_seeds(run_seed: int, members: Sequence[int]) -> list[int]:
    """Seed of each member index of a run: ``mix_seed(run_seed, m)``."""
    return [mix_seed(run_seed, m) for m in members]


class MemberRandom:
    """Random draws for a batch of members, each from its own stream.

    Args:
        seeds: one integer per member (see :func:`member_seeds`).
        key: integers naming this use (e.g. ``(stream, step)``); successive draws from the
            same object add a call index, so a closure may draw several tensors per call.
        calls: the call index of the next draw (to continue a stream elsewhere, e.g. in the
            process of a shared closure).

    >>> r = MemberRandom([1, 2, 3], key=(0, 5))
    >>> a = r.randn(4)
    >>> b = MemberRandom([2], key=(0, 5)).randn(4)
    >>> bool(torch.equal(a[1], b[0]))
    True
    """

    def __init__(self, seeds: Sequence[int], key: Sequence[int] = (), calls: int = 0) -> None:
        self.seeds = tuple(int(s) for s in seeds)
        self.key = tuple(int(k) for k in key)
        self._calls = int(calls)

    @property
    def calls(self) -> int:
        """Call index of the next draw."""
        return self._calls

    def skip(self, draws: int = 1) -> None:
        """Advance past ``draws`` draws made elsewhere from the same streams."""
        self._calls += int(draws)

    def __len__(self) -> int:
        return len(self.seeds)

    def __repr__(self) -> str:
        return f"MemberRandom(members={len(self.seeds)}, key={self.key})"

    def spawn(self, *key: int) -> MemberRandom:
        """A fresh stream family for the same members, keyed by ``self.key + key``."""
        return MemberRandom(self.seeds, self.key + tuple(key))

    def select(self, index: Sequence[int] | torch.Tensor) -> MemberRandom:
        """The streams of a subset of members (same key, fresh call counter)."""
        idx = index.tolist() if isinstance(index, torch.Tensor) else list(index)
        return MemberRandom([self.seeds[i] for i in idx], self.key)

    def randn(
        self, *shape: int, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
    ) -> torch.Tensor:
        """Standard normals ``[members, *shape]``; row ``m`` depends only on member ``m``'s key."""
        call = self._calls
        self._calls += 1
        device = torch.device(device)
        out = torch.empty((len(self.seeds), *shape), device=device, dtype=dtype)
        generator = torch.Generator(device=device)
        for row, seed in enumerate(mix_seeds(self.seeds, *self.key, call)):
            generator.manual_seed(seed)
            torch.randn(shape, generator=generator, device=device, dtype=dtype, out=out[row])
        return out
