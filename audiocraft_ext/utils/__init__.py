"""Utilities: atomic file output, checksums, checkpoint packages, shards of a list."""
