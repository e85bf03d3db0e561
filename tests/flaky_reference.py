"""`flakehouse flaky`'s definitions (docs/queries.md, "Flaky tests") computed from the events in
plain Python, one event at a time: the independent side its answers are checked against."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Sequence
from typing import Any

Event = dict[str, Any]


def typed(value: Any) -> tuple[str, Any]:
    """Values are distinct by type and value, as the engine's group keys are: 1 is not "1"."""
    return (type(value).__name__, value)


def flaky_reference(
    events: Sequence[Event],
    *,
    since_us: int | None = None,
    branch: str | None = None,
    min_runs: int = 2,
    limit: int | None = None,
) -> list[list[Any]]:
    """The report's rows, `last_seen` as int microseconds."""
    tests: dict[Hashable, list[Event]] = defaultdict(list)
    for e in events:
        if "name" not in e or e.get("status") not in ("passed", "failed", "error"):
            continue
        if since_us is not None and e["timestamp"] < since_us:
            continue
        if branch is not None and typed(e.get("branch")) != typed(branch):
            continue
        tests[(typed(e.get("classname")), typed(e["name"]))].append(e)

    rows = []
    for runs in tests.values():
        if len(runs) < min_runs:
            continue

        def failed(e: Event) -> bool:
            return bool(e["status"] != "passed")

        def marked(e: Event) -> bool:
            return e["status"] == "passed" and e.get("flaky") is True

        def unit_of(e: Event) -> Hashable | None:
            if "commit" in e:
                return ("commit", typed(e["commit"]))
            if "build" in e:
                return ("job", typed(e["build"]), typed(e.get("job")))
            return None

        by_unit: dict[Hashable, list[Event]] = defaultdict(list)
        for e in runs:
            by_unit[unit_of(e)].append(e)
        flaky_failures = 0
        for unit, group in by_unit.items():
            passed_here = unit is not None and any(not failed(e) for e in group)
            flaky_failures += sum(1 for e in group if marked(e) or (passed_here and failed(e)))

        kind = next((k for k in ("commit", "job") if any(u and u[0] == k for u in by_unit)), None)
        flips: int | None = None
        if kind is None:
            signal, ran_in, flaky_in = "runs", len(runs), sum(map(marked, runs))
        else:
            signal = kind + "s"
            units = [(u, g) for u, g in by_unit.items() if u is not None and u[0] == kind]
            units.sort(key=lambda ug: (min(e["timestamp"] for e in ug[1]), ug[0][1:]))
            ran_in = len(units)
            flaky_in = sum(
                1
                for _, g in units
                if any(map(marked, g)) or {failed(e) for e in g} == {True, False}
            )
            outcomes = ["fail" if any(map(failed, g)) else "pass" for _, g in units]
            flips = sum(
                1 for i in range(1, len(outcomes)) if outcomes[i - 1 : i + 1] == ["pass", "fail"]
            )
        if not flaky_failures and (flips or 0) < 2:
            continue
        first = runs[0]
        rows.append(
            [
                first.get("classname"),
                first["name"],
                flaky_failures / len(runs),
                flaky_failures,
                len(runs),
                sum(map(failed, runs)),
                sum(map(marked, runs)),
                flaky_in,
                ran_in,
                signal,
                flips,
                max(e["timestamp"] for e in runs),
            ]
        )

    def text(value: Any) -> tuple[int, str]:
        return (1, "") if value is None else (0, str(value))

    def worst_first(r: list[Any]) -> tuple[Any, ...]:
        return (-r[2], -(r[10] or 0), -r[3], -r[4], text(r[0]), text(r[1]))

    rows.sort(key=worst_first)
    for r in rows:
        r[2] = round(r[2], 6)
    return rows if limit is None else rows[:limit]
