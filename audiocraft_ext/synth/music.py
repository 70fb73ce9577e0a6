"""Render a note list with real instrument timbres: a General MIDI soundfont played by FluidSynth.

Corpus building only (`make corpus-deps` installs Debian's `fluidsynth` and `fluid-soundfont-gm`); inference
never imports this. FluidSynth is driven in process through pyfluidsynth: the notes are sent between blocks of
rendered samples, so no MIDI file or subprocess is needed, and a fresh synthesizer per render keeps a clip's
audio independent of what was rendered before it (the s16 output's dither state runs on across renders).
"""

from dataclasses import dataclass
from pathlib import Path
import typing as tp

import numpy as np

SOUNDFONTS = ("/usr/share/sounds/sf2/FluidR3_GM.sf2", "/usr/share/sounds/sf2/default-GM.sf2")
DRUM_CHANNEL = 9                 # General MIDI channel 10
DRUM_BANK = 128                  # FluidSynth's percussion bank


class MusicRenderError(RuntimeError):
    """FluidSynth or the soundfont is missing."""


@dataclass(frozen=True)
class Note:
    """One note: start and length in seconds, MIDI `pitch` and `velocity`, on a MIDI `channel` (9 = drums)."""
    start: float
    length: float
    pitch: int
    velocity: int
    channel: int


def find_soundfont(path: tp.Optional[str] = None) -> str:
    """`path`, or the first installed General MIDI soundfont of `SOUNDFONTS`; a clear error when none is."""
    for candidate in ([path] if path else SOUNDFONTS):
        if Path(candidate).is_file():
            return candidate
    raise MusicRenderError(f"no General MIDI soundfont at {path or ' or '.join(SOUNDFONTS)}: "
                           "run `make corpus-deps` (Debian packages fluidsynth and fluid-soundfont-gm)")


def render_notes(notes: tp.Sequence[Note], programs: tp.Dict[int, int], duration: float, sample_rate: int,
                 soundfont: tp.Optional[str] = None, gain: float = 0.4) -> np.ndarray:
    """Play `notes` with `programs` (channel -> General MIDI program; the drum channel uses the percussion
    bank) for `duration` seconds, FluidSynth's reverb and chorus on.

    Returns float32 mono `[round(duration * sample_rate)]` audio in [-1, 1] (the stereo output's mean).
    """
    try:
        import fluidsynth  # corpus building only: imported here so that inference never needs FluidSynth
    except ImportError as error:  # pyfluidsynth raises ImportError when libfluidsynth is missing
        raise MusicRenderError(f"FluidSynth is not available ({error}): run `make corpus-deps`") from None
    font = find_soundfont(soundfont)
    synth = fluidsynth.Synth(gain=gain, samplerate=float(sample_rate),
                             **{"synth.dynamic-sample-loading": 1})  # loads only the presets played: 5x faster
    try:
        font_id = synth.sfload(font)
        if font_id < 0:
            raise MusicRenderError(f"FluidSynth could not load the soundfont {font}")
        for channel, program in programs.items():
            synth.program_select(channel, font_id, DRUM_BANK if channel == DRUM_CHANNEL else 0, program)
        # note-offs sort before note-ons at the same sample, so a repeated pitch restarts cleanly
        events = sorted([(round(n.start * sample_rate), 1, n) for n in notes]
                        + [(round((n.start + n.length) * sample_rate), 0, n) for n in notes],
                        key=lambda event: (event[0], event[1]))
        total = round(duration * sample_rate)
        blocks, position = [], 0
        for sample, is_on, note in events:
            sample = min(sample, total)
            if sample > position:
                blocks.append(synth.get_samples(sample - position))
                position = sample
            if is_on:
                synth.noteon(note.channel, note.pitch, note.velocity)
            else:
                synth.noteoff(note.channel, note.pitch)
        if total > position:
            blocks.append(synth.get_samples(total - position))
    finally:
        synth.delete()
    stereo = np.concatenate(blocks).reshape(-1, 2).astype(np.float32) / 32768.0 if blocks else np.zeros((0, 2))
    return stereo.mean(axis=1).astype(np.float32)
