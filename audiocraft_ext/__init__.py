"""audiocraft_ext: video-to-music generation (VidMuse) built on AudioCraft.

The package extends AudioCraft (installed from PyPI) with a visual condition: frames read from a video
are encoded by a CLIP vision tower, fused by VidMuse's long-short-term module, and cross-attended by
AudioCraft's `LMModel` over EnCodec tokens.
"""

__version__ = "0.1.0"
