"""Data: reading frames from videos and images."""
