"""Mergeable sketches shared by storage (which builds them next to the data) and query (which
merges them): count distinct (exact sets, then Apache DataSketches HLL) and quantiles (DDSketch),
with one serialized format for `StateColumn.sketches` (plan.proto, FORMAT.md); and the query
service's batch finalizers, which merge and read the states of many groups at once."""

from flakehouse.sketches.distinct import EXACT_LIMIT, LG_K, DistinctState, distinct_of_groups
from flakehouse.sketches.errors import SketchFormatError
from flakehouse.sketches.hashing import (
    hash_bools,
    hash_floats,
    hash_ints,
    hash_scalars,
    hash_strings,
)
from flakehouse.sketches.quantile_batch import merge_quantile_groups, quantiles_of_groups
from flakehouse.sketches.quantile_buckets import RELATIVE_ACCURACY
from flakehouse.sketches.quantile_state import QuantileState

__all__ = [
    "EXACT_LIMIT",
    "LG_K",
    "RELATIVE_ACCURACY",
    "DistinctState",
    "QuantileState",
    "SketchFormatError",
    "distinct_of_groups",
    "hash_bools",
    "hash_floats",
    "hash_ints",
    "hash_scalars",
    "hash_strings",
    "merge_quantile_groups",
    "quantiles_of_groups",
]
