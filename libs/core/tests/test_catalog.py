"""The catalog's merge of records, without a broker: every reader ends up with the same catalog
whatever order racing writers' records come in, and a deleted dataset stays deleted."""

from __future__ import annotations

import itertools

from flakehouse.common.v1 import datasets_pb2
from flakehouse.core.catalog import Catalog, generation_topic


def record(generation: int, deleted_us: int = 0) -> datasets_pb2.DatasetRecord:
    return datasets_pb2.DatasetRecord(
        name="ci",
        generation=generation,
        topic=generation_topic("p", "ci", generation),
        partitions=2,
        deleted_us=deleted_us,
    )


def catalog_of(*records: datasets_pb2.DatasetRecord) -> Catalog:
    catalog = Catalog()
    for each in records:
        catalog.apply(each)
    return catalog


def test_a_late_live_write_of_the_same_generation_does_not_bring_a_deleted_dataset_back() -> None:
    catalog = catalog_of(record(1), record(1, deleted_us=5), record(1))
    assert catalog.live("ci") is None
    assert catalog.deleted_records() == [record(1, deleted_us=5)]
    assert catalog.next_generation("ci") == 2


def test_a_newer_generation_replaces_a_deleted_one_and_an_older_one_never_wins() -> None:
    catalog = catalog_of(record(1, deleted_us=5), record(2))
    assert catalog.live("ci") == record(2)
    catalog.apply(record(1))
    catalog.apply(record(1, deleted_us=5))
    assert catalog.live("ci") == record(2)
    catalog.apply(record(2, deleted_us=9))
    assert catalog.live("ci") is None and catalog.next_generation("ci") == 3


def test_every_order_of_the_same_records_gives_the_same_catalog() -> None:
    records = [record(1), record(1, deleted_us=5), record(2), record(2, deleted_us=9), record(3)]
    for order in itertools.permutations(records):
        assert catalog_of(*order).records == {"ci": record(3)}
    racing = [record(2), record(2, deleted_us=9), record(1, deleted_us=5)]
    for order in itertools.permutations(racing):
        assert catalog_of(*order).records == {"ci": record(2, deleted_us=9)}
