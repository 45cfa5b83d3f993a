"""BucketBatchSampler on constructed lengths and labels: evaluation counts every example once under any number of
ranks and its first batches are a fair sample; training keeps the ranks in lockstep."""

from __future__ import annotations

import numpy as np
import pytest

from rnnlab.data.sampler import BucketBatchSampler


def shares(lengths, batch_size: int, ranks: int, **kwargs) -> list[list[list[int]]]:
    """Each rank's batches."""
    return [list(BucketBatchSampler(lengths, batch_size, num_replicas=ranks, rank=rank, **kwargs))
            for rank in range(ranks)]


@pytest.mark.parametrize("n_examples, batch_size", [(2500, 256), (12, 4), (4, 4), (7, 3), (5, 8)])
@pytest.mark.parametrize("ranks", [1, 2, 3, 4, 5, 8])
def test_evaluation_gives_every_example_once(n_examples, batch_size, ranks):
    if n_examples < ranks:
        pytest.skip("fewer examples than ranks: refused (next test)")
    lengths = np.random.default_rng(1).integers(1, 500, n_examples)
    per_rank = shares(lengths, batch_size, ranks, shuffle=False)
    evaluated = sorted(k for batches in per_rank for batch in batches for k in batch)
    assert evaluated == list(range(n_examples))  # no example repeated, none left out
    assert all(batches for batches in per_rank)  # every rank evaluates (its metrics' sync waits for it)
    assert max(map(len, per_rank)) - min(map(len, per_rank)) <= 1
    for rank, batches in enumerate(per_rank):
        sampler = BucketBatchSampler(lengths, batch_size, shuffle=False, num_replicas=ranks, rank=rank)
        assert len(sampler) == len(batches) and all(len(b) <= batch_size for b in batches)


def test_fewer_examples_than_ranks_is_refused():
    with pytest.raises(ValueError, match="3 examples cannot give each of 4 ranks"):
        BucketBatchSampler(np.ones(3), 4, shuffle=False, num_replicas=4)


def test_limited_evaluation_reads_a_fair_sample():
    """A split stored one label after the other, every review truncated to the same length (as at a small
    max_len): sorting by length alone made the first batches all one label."""
    labels = np.repeat([0, 1], 1000)
    sampler = BucketBatchSampler(np.full(2000, 32), 100, shuffle=False, labels=labels)
    for batch in list(sampler)[:3]:
        assert labels[batch].mean() == pytest.approx(0.5, abs=0.02)
    # Lengths spread out: the first batches come from anywhere in the length order, not its short end
    lengths = np.arange(2000)
    first = [lengths[batch].mean() for batch in list(BucketBatchSampler(lengths, 100, shuffle=False))[:5]]
    assert max(first) > 1000 and sorted(first) != first


def test_evaluation_order_is_fixed_and_batches_are_bucketed():
    lengths = np.random.default_rng(2).integers(1, 500, 1000)
    sampler = BucketBatchSampler(lengths, 64, shuffle=False, seed=5)
    once = list(sampler)
    sampler.set_epoch(3)
    assert list(sampler) == once == list(BucketBatchSampler(lengths, 64, shuffle=False, seed=9))
    # Sorted then cut: a batch's lengths span a small part of the range
    assert max(np.ptp(lengths[batch]) for batch in once) < 50


@pytest.mark.parametrize("ranks", [1, 2, 3])
def test_training_ranks_step_in_lockstep_over_every_example(ranks):
    lengths = np.random.default_rng(3).integers(1, 500, 1001)
    for epoch in (0, 1):
        per_rank = []
        for rank in range(ranks):
            sampler = BucketBatchSampler(lengths, 32, chunk_batches=5, num_replicas=ranks, rank=rank)
            sampler.set_epoch(epoch)
            per_rank.append(list(sampler))
            assert len(sampler) == len(per_rank[-1])
        assert len({len(batches) for batches in per_rank}) == 1  # same number of steps on every rank
        assert {k for batches in per_rank for batch in batches for k in batch} == set(range(1001))


@pytest.mark.parametrize("n_examples, batch_size", [(1001, 32), (8, 3), (8, 4), (5, 4)])
@pytest.mark.parametrize("ranks", [1, 2, 3, 5])
def test_training_counts_each_example_once_however_many_ranks(n_examples, batch_size, ranks):
    """The padded batches (repeated so that every rank steps) weigh 0 in `examples_per_step`: over an epoch the
    count is the split's size, while the ranks' batches together hold more examples where padding repeated some."""
    lengths = np.random.default_rng(3).integers(1, 500, n_examples)
    samplers = [BucketBatchSampler(lengths, batch_size, chunk_batches=5, num_replicas=ranks, rank=rank)
                for rank in range(ranks)]
    per_rank = [list(sampler) for sampler in samplers]
    assert len({len(batches) for batches in per_rank}) == 1 and all(per_rank)  # every rank steps, in lockstep
    for sampler in samplers:  # every rank knows the count of every step
        assert sampler.examples_per_step == samplers[0].examples_per_step
        assert len(sampler.examples_per_step) == len(per_rank[0])
        assert sum(sampler.examples_per_step) == n_examples
    for step in range(len(per_rank[0])):  # a step's count: the examples first seen in it, on any rank
        seen_before = {k for batches in per_rank for batch in batches[:step] for k in batch}
        new = {k for batches in per_rank for k in batches[step]} - seen_before
        assert samplers[0].examples_per_step[step] == len(new)
    trained = sum(len(batch) for batches in per_rank for batch in batches)
    if -(-n_examples // batch_size) % ranks:  # padded: the batches hold repeats, the count does not
        assert trained > n_examples
