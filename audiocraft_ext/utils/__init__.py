"""Utilities: atomic file output, checksums, checkpoint packages."""
