"""The pure parts of dataset lifecycle and retention following, without servers."""

from __future__ import annotations

from flakehouse.common.v1 import datasets_pb2
from flakehouse.ingest.datasets import has_limits, retired_topics
from flakehouse.ingest.retention import retention_changes, retention_configs
from flakehouse.quota.v1 import quota_pb2


def record(name: str, generation: int = 1, deleted_us: int = 0) -> datasets_pb2.DatasetRecord:
    topic = f"p.{name}" if generation == 1 else f"p.{name}.{generation}"
    return datasets_pb2.DatasetRecord(
        name=name, generation=generation, topic=topic, partitions=2, deleted_us=deleted_us
    )


def limits(name: str, retention_seconds: int) -> quota_pb2.DatasetLimits:
    quota = quota_pb2.Quota(dataset=name, retention_seconds=retention_seconds)
    return quota_pb2.DatasetLimits(quota=quota)


def test_retention_configs_leave_the_broker_default_without_a_retention() -> None:
    assert retention_configs(0) == {}
    assert retention_configs(3600) == {"retention.ms": "3600000"}


def test_a_changed_retention_is_applied_and_an_unchanged_one_is_not() -> None:
    live = [record("ci"), record("nightly", 3)]
    watched = {"ci": limits("ci", 7200), "nightly": limits("nightly", 600)}
    applied = {"p.ci": 3600, "p.nightly.3": 600}
    assert retention_changes(live, watched, applied) == {"p.ci": 7200}


def test_a_topic_never_touched_gets_a_retention_only_when_there_is_one() -> None:
    live = [record("ci"), record("nightly")]
    assert retention_changes(live, {"ci": limits("ci", 600)}, {}) == {"p.ci": 600}
    # A dataset with other limits but no retention, or none at all: nothing to do.
    assert retention_changes(live, {"ci": limits("ci", 0)}, {}) == {}


def test_a_removed_retention_goes_back_to_the_broker_default() -> None:
    live = [record("ci"), record("nightly")]
    # Gone from the watch (no limits left) or set to 0: both mean no retention.
    applied = {"p.ci": 600, "p.nightly": 600}
    assert retention_changes(live, {"nightly": limits("nightly", 0)}, applied) == {
        "p.ci": 0,
        "p.nightly": 0,
    }


def test_only_live_datasets_are_followed() -> None:
    # Limits of a dataset that is not in the catalog (deleted, or never created) touch nothing.
    assert retention_changes([record("ci")], {"gone": limits("gone", 600)}, {}) == {}


def test_retired_topics_are_every_generation_that_is_not_live() -> None:
    records = [record("ci", 3), record("nightly", 2, deleted_us=5), record("new")]
    assert retired_topics("p", records) == ["p.ci", "p.ci.2", "p.nightly", "p.nightly.2"]


def test_has_limits_sees_any_non_zero_limit() -> None:
    assert not has_limits(quota_pb2.Quota(dataset="ci"))
    assert has_limits(quota_pb2.Quota(max_concurrent_queries=1))
    assert has_limits(quota_pb2.Quota(bytes_per_second=0.5))


def test_limits_of_another_generation_leave_the_topic_as_it_is() -> None:
    live = [record("ci", 2)]
    applied = {"p.ci.2": 3600}
    stale = quota_pb2.DatasetLimits(quota=limits("ci", 600).quota, generation=1)
    assert retention_changes(live, {"ci": stale}, applied) == {}
    assert retention_changes(live, {"ci": stale}, {}) == {}
    current = quota_pb2.DatasetLimits(quota=limits("ci", 600).quota, generation=2)
    assert retention_changes(live, {"ci": current}, applied) == {"p.ci.2": 600}
    # Generation 0: quota does not say which, so they apply.
    assert retention_changes(live, {"ci": limits("ci", 600)}, applied) == {"p.ci.2": 600}
