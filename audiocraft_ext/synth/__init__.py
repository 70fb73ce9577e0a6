"""The procedural audio-visual corpus (rules: brightness -> pitch, speed -> tempo, hue -> chord) and its evaluation."""
