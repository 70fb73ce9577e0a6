"""Media files: frames read by timestamp, audio in and out, muxing, and which extensions are which media.

Nothing here knows a model or a dataset.
"""
