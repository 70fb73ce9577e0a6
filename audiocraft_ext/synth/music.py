"""Render a note list with real instrument timbres: a General MIDI soundfont played by FluidSynth.

Corpus building only (`make corpus-deps` installs Debian's `fluidsynth` and `fluid-soundfont-gm`); inference
never imports this. FluidSynth is driven in process through pyfluidsynth: the notes are sent between blocks of
rendered samples, so no MIDI file or subprocess is needed, and a fresh synthesizer per render keeps a clip's
audio independent of what was rendered before it. The samples are read as floats (`render_float`), not as
pyfluidsynth's dithered 16-bit ones, whose dither table FluidSynth draws from C's `rand()` once per process: its
values depend on what the process ran before (loading a model changes them), and so did a clip's music, by up
to 3e-4, enough to move the codec's tokens and the evaluation's teacher-forced scores from run to run.
"""

import ctypes
from dataclasses import dataclass
import functools
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


@functools.lru_cache(maxsize=None)
def float_writer(fluidsynth: tp.Any) -> tp.Callable[..., int]:
    """FluidSynth's `fluid_synth_write_float`, bound once by pyfluidsynth's own `cfunc`."""
    return fluidsynth.cfunc("fluid_synth_write_float", ctypes.c_int, ("synth", ctypes.c_void_p, 1),
                            ("len", ctypes.c_int, 1), ("lout", ctypes.c_void_p, 1), ("loff", ctypes.c_int, 1),
                            ("lincr", ctypes.c_int, 1), ("rout", ctypes.c_void_p, 1), ("roff", ctypes.c_int, 1),
                            ("rincr", ctypes.c_int, 1))


def render_float(fluidsynth: tp.Any, synth: tp.Any, frames: int) -> np.ndarray:
    """The next `frames` stereo frames of pyfluidsynth's `synth` as float32 `[frames, 2]`, through FluidSynth's
    `fluid_synth_write_float`: no dither, so the same in every process."""
    out = np.zeros((frames, 2), dtype=np.float32)
    if float_writer(fluidsynth)(synth.synth, frames, out.ctypes.data, 0, 2, out.ctypes.data, 1, 2) != 0:
        raise MusicRenderError("FluidSynth could not render samples")
    return out


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
                blocks.append(render_float(fluidsynth, synth, sample - position))
                position = sample
            if is_on:
                synth.noteon(note.channel, note.pitch, note.velocity)
            else:
                synth.noteoff(note.channel, note.pitch)
        if total > position:
            blocks.append(render_float(fluidsynth, synth, total - position))
    finally:
        synth.delete()
    stereo = np.concatenate(blocks) if blocks else np.zeros((0, 2), dtype=np.float32)
    return stereo.mean(axis=1).clip(-1, 1).astype(np.float32)
