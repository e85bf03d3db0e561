"""The executor's fast paths and pruning, checked against plain Python: segments skipped from
column statistics (without decoding them, and never when a row could match), LIKE on random
strings and patterns, ORDER BY ... LIMIT with ties beyond float precision, and group keys too
many to pack."""

from __future__ import annotations

import functools
import math
import random
import re
from collections import Counter
from typing import Any

import pytest

from flakehouse.storage import fragment
from flakehouse.storage.builder import SegmentBuilder
from flakehouse.storage.codec import decode_segment, segment_column_stats
from flakehouse.storage.segment import SegmentView
from flakehouse.storage.v1 import storage_pb2


def _sealed(kit: Any, seq: int, events: list[dict[str, Any]]) -> storage_pb2.Segment:
    builder = SegmentBuilder("ci", 0, seq)
    builder.add(kit.batch(events), offset=seq)
    return builder.seal()


class _Lazy:
    """Sealed segments as the store hands them out: stats from metadata, columns decoded on
    first access (counted)."""

    def __init__(self, segments: list[storage_pb2.Segment]) -> None:
        self.segments = segments
        self.decoded: list[int] = []

    def views(self) -> list[SegmentView]:
        self.decoded = []
        out = []
        for seg in self.segments:

            def load(seg: storage_pb2.Segment = seg) -> Any:
                self.decoded.append(seg.sequence)
                view = decode_segment(seg)
                return view.timestamps, view.columns

            out.append(
                SegmentView(
                    row_count=seg.row_count,
                    min_ts=seg.min_timestamp_us,
                    max_ts=seg.max_timestamp_us,
                    sequence=seg.sequence,
                    loader=load,
                    ids_loader=lambda seg=seg: decode_segment(seg).event_ids,
                    column_stats=segment_column_stats(seg),
                )
            )
        return out


# Segment 0: int durations 0..3, statuses failed/passed. Segment 1: durations 5..9,
# passed/skipped. Segment 2: no duration, only 'error' (and one int status).
SEGMENTS = [
    [{"timestamp": 10 + i, "id": i, "duration": i % 4, "status": ["passed", "failed"][i % 2]}
     for i in range(8)],
    [{"timestamp": 100 + i, "id": 10 + i, "duration": 5 + i % 5,
      "status": ["passed", "skipped"][i % 2]} for i in range(8)],
    [{"timestamp": 200 + i, "id": 20 + i, "status": "error" if i else 7} for i in range(8)],
]  # fmt: skip
ALL = [e for seg in SEGMENTS for e in seg]
STRINGS = ["passed", "failed", "skipped", "error"]


@pytest.mark.parametrize(
    ("expr", "skipped", "match"),
    [
        (lambda k: k.cmp("duration", ">", 4), {0, 2}, lambda e: e.get("duration", -1) > 4),
        (lambda k: k.cmp("duration", ">", 100), {0, 1, 2}, lambda e: False),
        (lambda k: k.cmp("duration", "<=", 2.5), {1, 2}, lambda e: e.get("duration", 99) <= 2.5),
        (lambda k: k.cmp("status", "=", "skipped"), {0, 2}, lambda e: e["status"] == "skipped"),
        (lambda k: k.cmp("status", "=", "zzz"), {0, 1, 2}, lambda e: False),
        # Within segment 0's [min, max], not in its dictionary: metadata cannot tell.
        (lambda k: k.cmp("status", "=", "ok"), {1, 2}, lambda e: False),
        # Segment 2's strings are all 'error'; its int is not comparable with a string.
        (lambda k: k.cmp("status", "!=", "error"), {2}, lambda e: e["status"] in STRINGS[:3]),
        (lambda k: k.cmp("status", "=", 7), {0, 1}, lambda e: e["status"] == 7),
        (lambda k: k.not_(k.cmp("duration", "<=", 3)), {0, 2}, lambda e: e.get("duration", 0) > 3),
        (lambda k: k.is_null("duration"), {0, 1}, lambda e: "duration" not in e),
        (lambda k: k.is_null("duration", negated=True), {2}, lambda e: "duration" in e),
        (lambda k: k.like("status", "sk%"), {0, 2}, lambda e: e["status"] == "skipped"),
        (lambda k: k.like("status", "%ed"), set(), lambda e: e["status"] in STRINGS[:3]),
        (lambda k: k.cmp("timestamp", ">=", 150), {0, 1}, lambda e: e["timestamp"] >= 150),
        (lambda k: k.in_("status", ["skipped", "zzz"]), {0, 2}, lambda e: e["status"] == "skipped"),
        (lambda k: k.in_("status", ["x"], negated=True), set(), lambda e: e["status"] != "x"),
        (
            lambda k: k.or_(k.cmp("duration", ">", 100), k.cmp("status", "=", "error")),
            {0, 1},
            lambda e: e["status"] == "error",
        ),
        (
            lambda k: k.and_(k.cmp("duration", ">=", 0), k.cmp("status", "=", "passed")),
            {2},
            lambda e: "duration" in e and e["status"] == "passed",
        ),
        (lambda k: k.or_(), {0, 1, 2}, lambda e: False),
        (lambda k: k.cmp("duration", "=", None), {0, 1, 2}, lambda e: False),
    ],
)
def test_statistics_skip_segments_and_keep_answers(
    kit: Any, expr: Any, skipped: set[int], match: Any
) -> None:
    lazy = _Lazy([_sealed(kit, i, events) for i, events in enumerate(SEGMENTS)])
    plan = kit.plan(filter=expr(kit), select=["id"])
    expected = [e["id"] for e in ALL if match(e)]
    result = fragment.execute(plan, lazy.views())
    assert sorted(r[0] for r in kit.rows(result)) == expected
    assert result.stats.segments_skipped == len(skipped)
    assert result.stats.segments_scanned == 3 - len(skipped)
    assert result.stats.rows_scanned == 8 * (3 - len(skipped))
    # Skipped from metadata alone: never decoded.
    assert sorted(lazy.decoded) == sorted({0, 1, 2} - skipped)
    counted = fragment.execute(
        kit.plan(filter=expr(kit), aggregates=[kit.agg("count")]), lazy.views()
    )
    assert list(counted.group_columns.states[0].counts) == [len(expected)]
    # Views without metadata stats (the open segment) prune from their decoded columns, which
    # also know the dictionary: at least as much, and the same rows.
    open_views = []
    for i, events in enumerate(SEGMENTS):
        builder = SegmentBuilder("ci", 0, i)
        builder.add(kit.batch(events), offset=i)
        open_views.append(builder.view())
    from_columns = fragment.execute(plan, open_views)
    assert sorted(r[0] for r in kit.rows(from_columns)) == expected
    assert from_columns.stats.segments_skipped >= len(skipped)


def test_statistics_never_skip_what_could_match(kit: Any) -> None:
    big = 2**53 + 1
    segments = [
        [{"timestamp": 0, "id": 0, "n": big}, {"timestamp": 1, "id": 1, "n": big + 2}],
        [{"timestamp": 2, "id": 2, "f": math.nan}, {"timestamp": 3, "id": 3, "f": math.nan}],
        [{"timestamp": 4, "id": 4, "f": 1.0}, {"timestamp": 5, "id": 5, "f": math.nan}],
        [{"timestamp": 6, "id": 6, "b": False}, {"timestamp": 7, "id": 7, "s": "a\x00"}],
    ]
    lazy = _Lazy([_sealed(kit, i, events) for i, events in enumerate(segments)])
    cases = [
        # An int column meets a float literal in float64, where 2**53 + 1 rounds to 2**53.
        (kit.cmp("n", "<=", float(2**53)), {0}),
        (kit.cmp("n", "=", float(2**53)), {0}),
        # NaN != anything: true, although the stats hold no number.
        (kit.cmp("f", "!=", 1.0), {2, 3, 5}),
        (kit.cmp("f", "=", 1.0), {4}),
        (kit.not_(kit.cmp("f", ">=", 0.0)), {2, 3, 5}),
        (kit.cmp("f", ">", math.nan), set()),
        (kit.cmp("f", "!=", math.nan), {2, 3, 4, 5}),
        (kit.cmp("b", "<", True), {6}),
        (kit.cmp("s", "=", "a\x00"), {7}),
        (kit.like("s", "a%"), {7}),
    ]
    for expr, expected in cases:
        result = fragment.execute(kit.plan(filter=expr, select=["id"]), lazy.views())
        assert {r[0] for r in kit.rows(result)} == expected, expr


# -- LIKE ------------------------------------------------------------------------------------------


def _like_reference(pattern: str, s: str) -> bool:
    regex = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, s, re.DOTALL) is not None


@pytest.mark.parametrize("seed", range(4))
def test_like_matches_regex_on_random_strings(kit: Any, seed: int) -> None:
    rng = random.Random(seed)
    alphabet = ["a", "b", "ab", "%", "_", "\x00", "ü", "\n", "ba"]
    strings = sorted({"".join(rng.choices(alphabet, k=rng.randrange(7))) for _ in range(300)})
    events: list[dict[str, Any]] = []
    for i, s in enumerate(strings):
        events.append({"timestamp": i, "id": i, "name": s})
        if i % 17 == 0:
            events.append({"timestamp": i, "id": 10_000 + i, "name": i})
        if i % 13 == 0:
            events.append({"timestamp": i, "id": 20_000 + i})
    half = len(events) // 2
    builder = SegmentBuilder("ci", 0, 0)
    builder.add(kit.batch(events), offset=0)
    views = [decode_segment(builder.seal())]
    other = SegmentBuilder("ci", 0, 1)
    other.add(kit.batch(events[:half]), offset=0)
    views.append(other.view())
    by_id = {e["id"]: e.get("name") for e in events}
    for _ in range(60):
        pattern = "".join(rng.choices(["a", "b", "%", "_", "\x00", "ü", "ab"], k=rng.randrange(6)))
        negated = rng.random() < 0.3
        result = fragment.execute(
            kit.plan(filter=kit.like("name", pattern, negated), select=["id"]), views
        )
        got = Counter(r[0] for r in kit.rows(result))
        expected = Counter(
            e["id"]
            for e in events + events[:half]
            if isinstance(by_id[e["id"]], str)
            and _like_reference(pattern, by_id[e["id"]]) != negated
        )
        assert got == expected, (pattern, negated)


# -- ORDER BY ... LIMIT ----------------------------------------------------------------------------


def _value_key(x: Any) -> tuple[Any, ...]:
    """Type tier, then value: numbers < strings < bools < null; NaN the greatest number."""
    if x is None:
        return (3,)
    if isinstance(x, bool):
        return (2, x)
    if isinstance(x, str):
        return (1, x)
    return (0, x != x, 0 if x != x else x)


def _compare(descending: bool, a: dict[str, Any], b: dict[str, Any]) -> int:
    ka, kb = _value_key(a.get("x")), _value_key(b.get("x"))
    if ka[0] != kb[0]:
        return -1 if ka[0] < kb[0] else 1
    # Python compares ints and floats exactly.
    c = (ka > kb) - (ka < kb)
    if c:
        return -c if descending else c
    return (a["id"] > b["id"]) - (a["id"] < b["id"])


def _open_view(kit: Any, seq: int, events: list[dict[str, Any]]) -> SegmentView:
    builder = SegmentBuilder("ci", 0, seq)
    builder.add(kit.batch(events), offset=seq)
    return builder.view()


def test_limited_order_with_ties_beyond_float_precision(kit: Any) -> None:
    big = 2**53
    values: list[Any] = [big, big + 1, big + 2, float(big), -big - 1, float(-big), math.nan]
    values += [math.inf, -math.inf, 0, 0.0, -0.0, "b", "a", True, False, None, None, 3, 3.0]
    events = [{"timestamp": i, "id": i, "x": x} for i, x in enumerate(values * 3)]
    random.Random(7).shuffle(events)
    views = [decode_segment(_sealed(kit, 0, events[:30])), _open_view(kit, 1, events[30:])]
    for descending in (False, True):
        expected = sorted(events, key=functools.cmp_to_key(functools.partial(_compare, descending)))
        for limit in range(1, len(events) + 2):
            plan = kit.plan(select=["id"], order_by=[("x", descending), ("id", False)], limit=limit)
            got = [r[0] for r in kit.rows(fragment.execute(plan, views))]
            assert got == [e["id"] for e in expected[:limit]], (descending, limit)
            # With one ORDER BY field ties come in any order: compare the values.
            single = kit.plan(select=["x"], order_by=[("x", descending)], limit=limit)
            got_x = [_value_key(r[0]) for r in kit.rows(fragment.execute(single, views))]
            assert got_x == [_value_key(e.get("x")) for e in expected[:limit]], (descending, limit)


# -- group keys ------------------------------------------------------------------------------------


def test_group_keys_too_many_to_pack_fall_back_to_tuples(kit: Any) -> None:
    # Four keys get 16 bits each when packed: a key with more values than that switches the
    # index to tuples midway, and groups found before must keep their numbers.
    events = [
        {"timestamp": i, "a": i % 70_000, "b": "xy"[i % 2], "c": i % 3 == 0, "d": 1.5}
        for i in range(80_000)
    ]
    plan = kit.plan(group_by=["a", "b", "c", "d"], aggregates=[kit.agg("count")])
    views = []
    for seq, (lo, hi) in enumerate([(0, 40_000), (40_000, 80_000)]):
        views.append(decode_segment(_sealed(kit, seq, events[lo:hi])))
    groups = kit.groups(fragment.execute(plan, views))
    expected = Counter(
        (("int", e["a"]), ("string", e["b"]), ("bool", e["c"]), ("float", e["d"])) for e in events
    )
    assert {k: s[0]["count"] for k, s in groups.items()} == dict(expected)
