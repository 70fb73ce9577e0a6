"""A deterministic split of a sorted list over workers (training ranks, inference shards, SLURM array tasks)."""

import typing as tp

T = tp.TypeVar("T")


def check_shard(num_shards: int, shard_index: int) -> None:
    """Raise `ValueError` (one line) unless `num_shards >= 1` and `0 <= shard_index < num_shards`."""
    if num_shards < 1:
        raise ValueError(f"the shard count must be at least 1 (got {num_shards})")
    if not 0 <= shard_index < num_shards:
        raise ValueError(f"shard index {shard_index} out of range: with {num_shards} shard(s) it must be in "
                         f"0..{num_shards - 1}")


def shard(items: tp.Sequence[T], num_shards: int, shard_index: int) -> tp.List[T]:
    """Round-robin share of `items` for shard `shard_index` of `num_shards`: items `shard_index`,
    `shard_index + num_shards`, ... Every item goes to exactly one shard, the shards' sizes differ by one at
    most, and shard i of N split again into M gives shard `i + N * j` of `N * M` (so splits can be nested).
    The split follows the order of `items`: sort them first so that every worker sees the same list."""
    check_shard(num_shards, shard_index)
    return list(items[shard_index::num_shards])
