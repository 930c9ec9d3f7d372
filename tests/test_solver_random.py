"""Per-member random streams: the vectorised seed hash is the scalar one, and a member's draws do
not depend on its batch."""

from __future__ import annotations

import random

import torch

from solvers.random import MemberRandom, mix_seed, mix_seeds


def test_vectorised_mix_seeds_equal_the_scalar_hash() -> None:
    rng = random.Random(0)
    firsts = [rng.randrange(-2**70, 2**70) for _ in range(300)] + [0, 1, -1, 2**63, 2**64 - 1, 2**64]
    for values in [(), (3,), (7, -5, 2**65 + 3), (1, 2, 3, 4)]:
        assert mix_seeds(firsts, *values) == [mix_seed(first, *values) for first in firsts]


def test_member_draws_do_not_depend_on_the_batch() -> None:
    batch = MemberRandom([5, 9, 11], key=(2, 40), calls=3).randn(4, 4)
    alone = MemberRandom([9], key=(2, 40), calls=3).randn(4, 4)
    assert torch.equal(batch[1], alone[0])
    assert not torch.equal(batch[0], batch[1])
