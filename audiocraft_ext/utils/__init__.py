"""Utilities: checkpoint export."""
