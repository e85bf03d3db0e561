"""A dataset's limits after a SetQuota: the limits its update mask names, and the floor that a
change of retention raises. Pure: the time is passed in."""

from __future__ import annotations

from collections.abc import Sequence

from flakehouse.core.errors import InvalidArgument
from flakehouse.core.limit_rules import QUOTA_FIELDS, validate_quota
from flakehouse.quota.v1 import quota_pb2

US = 1_000_000


def empty_limits(dataset: str, generation: int) -> quota_pb2.DatasetLimits:
    return quota_pb2.DatasetLimits(quota=quota_pb2.Quota(dataset=dataset), generation=generation)


def of_generation(limits: quota_pb2.DatasetLimits, generation: int) -> quota_pb2.DatasetLimits:
    """`limits` marked as those of the dataset's `generation`."""
    return quota_pb2.DatasetLimits(quota=limits.quota, floor=limits.floor, generation=generation)


def merged_quota(
    current: quota_pb2.Quota, update: quota_pb2.Quota, paths: Sequence[str]
) -> quota_pb2.Quota:
    """`current` with the limits named in `paths` taken from `update`; every limit when `paths`
    is empty. Raises InvalidArgument for a path that is not a limit."""
    unknown = sorted(set(paths) - set(QUOTA_FIELDS))
    if unknown:
        raise InvalidArgument(
            f"update_mask names {', '.join(map(repr, unknown))}, which are not limits "
            f"(limits: {', '.join(QUOTA_FIELDS)})"
        )
    merged = quota_pb2.Quota(dataset=update.dataset)
    for name in QUOTA_FIELDS:
        source = update if not paths or name in paths else current
        setattr(merged, name, getattr(source, name))
    return merged


def raised_floor(
    floor: quota_pb2.Cutoff, cutoff_us: int, reason: quota_pb2.CutoffReason.ValueType
) -> quota_pb2.Cutoff:
    """The floor moved up to `cutoff_us`; floors never move back."""
    if cutoff_us <= floor.cutoff_us:
        return floor
    return quota_pb2.Cutoff(cutoff_us=cutoff_us, reason=reason)


def updated_limits(
    current: quota_pb2.DatasetLimits,
    update: quota_pb2.Quota,
    paths: Sequence[str],
    now_us: int,
) -> quota_pb2.DatasetLimits:
    """The limits after the update, valid (InvalidArgument if not). When the retention changes,
    the floor rises to the old retention's cutoff of the moment: replicas may already have
    deleted what it let go, so a longer retention must not show a partial past again. The
    generation stays that of `current`."""
    quota = merged_quota(current.quota, update, paths)
    validate_quota(quota)
    floor = current.floor
    old_retention_s = current.quota.retention_seconds
    if old_retention_s and quota.retention_seconds != old_retention_s:
        floor = raised_floor(
            floor, now_us - old_retention_s * US, quota_pb2.CUTOFF_REASON_RETENTION
        )
    return quota_pb2.DatasetLimits(quota=quota, floor=floor, generation=current.generation)


def with_floor(limits: quota_pb2.DatasetLimits, floor: quota_pb2.Cutoff) -> quota_pb2.DatasetLimits:
    return quota_pb2.DatasetLimits(quota=limits.quota, floor=floor, generation=limits.generation)


def has_effect(limits: quota_pb2.DatasetLimits) -> bool:
    """True when the dataset has a limit or a floor: what WatchLimits lists."""
    return limits.floor.cutoff_us > 0 or any(getattr(limits.quota, f) for f in QUOTA_FIELDS)
