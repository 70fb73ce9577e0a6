"""The procedural audio-visual corpus (rules: brightness -> pitch, speed -> tempo, cuts -> chords) and its evaluation."""
