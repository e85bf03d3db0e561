"""Benchmark of the batch finalizers (`quantiles_of_groups`, `distinct_of_groups`): the states
of many groups, one per partition, merged and read at once, as the query service does.

Run from the repository root:

    .venv/bin/python libs/sketches/benchmarks/batch.py [--groups 300 40000] [--per-state]

Each group has one state per partition (8). A state is built from 1-30 random values, or from
1 000-6 000 for 0.5 % of them: durations for quantiles (a lognormal spread around a lognormal
per-group scale), ints for count distinct (drawn from twice as many values as the state has, so
partitions overlap; the large states beyond EXACT_LIMIT distinct values are HLL). Prints, in
milliseconds, the median and the best of a few runs of the batch call (p50, p95 and p99 for
quantiles); with --per-state also one `from_bytes` per state and one `merge_all` per group
(the API the batch replaces), on at most --sample groups and scaled to all of them, after
checking that both give the same answers there. Also prints how long `encode_grouped` (what
storage nodes call) takes to write the quantile states.
"""

from __future__ import annotations

import argparse
import statistics
import struct
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from flakehouse.sketches import (
    DistinctState,
    QuantileState,
    distinct_of_groups,
    hash_ints,
    quantiles_of_groups,
)
from flakehouse.sketches.quantile_buckets import bucket_codes
from flakehouse.sketches.quantile_codec import encode_grouped

PARTITIONS = 8
QS = (0.5, 0.95, 0.99)
RUNS = 5
Groups = list[list[bytes]]


def _sizes(rng: np.random.Generator, n: int) -> npt.NDArray[np.int64]:
    sizes = rng.integers(1, 31, n)
    big = rng.random(n) < 0.005
    sizes[big] = rng.integers(1_000, 6_001, int(big.sum()))
    return sizes


def quantile_triples(n_groups: int, seed: int = 1) -> tuple[Any, Any, Any, int]:
    """(state, code, count) triples of n_groups * PARTITIONS states, as storage counts them."""
    rng = np.random.default_rng(seed)
    n_states = n_groups * PARTITIONS
    sizes = _sizes(rng, n_states)
    scale = np.repeat(rng.lognormal(0.0, 2.0, n_groups), PARTITIONS)
    values = np.repeat(scale, sizes) * rng.lognormal(0.0, 0.7, int(sizes.sum()))
    keys = np.sort(np.repeat(np.arange(n_states), sizes) << 20 | bucket_codes(values))
    firsts = np.flatnonzero(np.concatenate([[True], keys[1:] != keys[:-1]]))
    counts = np.diff(np.append(firsts, len(keys)))
    return keys[firsts] >> 20, keys[firsts] & ((1 << 20) - 1), counts, n_states


def quantile_groups(n_groups: int) -> Groups:
    encoded = encode_grouped(*quantile_triples(n_groups))
    return [encoded[g * PARTITIONS : (g + 1) * PARTITIONS] for g in range(n_groups)]


def distinct_groups(n_groups: int, seed: int = 2) -> Groups:
    rng = np.random.default_rng(seed)
    states = []
    for size in _sizes(rng, n_groups * PARTITIONS).tolist():
        values = rng.integers(0, 2 * size, size)
        states.append(DistinctState.from_hashes(hash_ints(values)).to_bytes())
    return [states[g * PARTITIONS : (g + 1) * PARTITIONS] for g in range(n_groups)]


def per_state_quantiles(groups: Sequence[Sequence[bytes]]) -> list[list[float | None]]:
    out = []
    for group in groups:
        merged = QuantileState.merge_all([QuantileState.from_bytes(b) for b in group])
        out.append([merged.quantile(q) for q in QS])
    return out


def per_state_distinct(groups: Sequence[Sequence[bytes]]) -> list[int]:
    return [
        DistinctState.merge_all([DistinctState.from_bytes(b) for b in group]).estimate()
        for group in groups
    ]


def batch_quantiles(groups: Sequence[Sequence[bytes]]) -> list[list[float | None]]:
    return quantiles_of_groups(groups, QS)


def _bits(answers: Any) -> Any:
    if isinstance(answers, list):
        return [_bits(a) for a in answers]
    return answers if not isinstance(answers, float) else struct.pack("<d", answers)


def timed(run: Callable[[], object], runs: int) -> tuple[float, float]:
    """Median and best of `runs` runs, in ms."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--groups", type=int, nargs="+", default=[300, 40_000])
    parser.add_argument("--per-state", action="store_true", help="also time the per-state API")
    parser.add_argument("--sample", type=int, default=2_000, help="groups timed per state")
    args = parser.parse_args()
    for n_groups in args.groups:
        triples = quantile_triples(n_groups)
        median, best = timed(lambda: encode_grouped(*triples), 3)  # noqa: B023
        print(f"encode   {n_groups * PARTITIONS:>7} states: {median:8.1f} ms (best {best:.1f})")
    kinds: list[tuple[str, Callable[[int], Groups], Callable[..., Any], Callable[..., Any]]] = [
        ("quantile", quantile_groups, batch_quantiles, per_state_quantiles),
        ("distinct", distinct_groups, distinct_of_groups, per_state_distinct),
    ]
    for kind, build, batch, per_state in kinds:
        for n_groups in args.groups:
            groups = build(n_groups)
            n_states = sum(map(len, groups))
            size = sum(len(b) for g in groups for b in g) / 1e6
            batch(groups)  # warm up (tables built on first use)
            median, best = timed(lambda: batch(groups), RUNS)  # noqa: B023
            line = (
                f"{kind:8} {n_states:>7} states, {n_groups:>6} groups, {size:5.1f} MB:"
                f" batch {median:7.1f} ms (best {best:6.1f})"
            )
            if args.per_state:
                sample = groups[: args.sample]
                start = time.perf_counter()
                want = per_state(sample)
                ms = (time.perf_counter() - start) * 1000 * len(groups) / len(sample)
                assert _bits(batch(sample)) == _bits(want), "batch and per-state answers differ"
                line += f", per state {ms:8.0f} ms"
                if len(sample) < len(groups):
                    line += f" (scaled from {len(sample)} groups)"
            print(line, flush=True)


if __name__ == "__main__":
    main()
