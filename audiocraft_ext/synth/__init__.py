"""Synthetic video: procedural scenes, the audio-visual corpus whose music follows its picture by rules
(brightness -> pitch, speed -> tempo, hue -> chord), and its evaluation."""
