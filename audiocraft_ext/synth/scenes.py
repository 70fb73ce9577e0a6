"""Procedural videos: moving shapes over coloured backgrounds, with scene cuts, rendered with numpy, written
with PyAV. Used for the example videos in `dataset/example/infer/` and for tests.

    python -m audiocraft_ext.synth.scenes --examples dataset/example/infer --train_examples dataset/example/train
"""

import argparse
from dataclasses import dataclass, field
from fractions import Fraction
import math
from pathlib import Path
import typing as tp

import av
import numpy as np

from ..utils.atomic import atomic_output

SHAPES = ("circle", "square", "triangle")


@dataclass
class Shape:
    """A shape moving on a closed path: centre `(x, y)` in [0, 1] units, orbit radius, speed in turns per second."""
    kind: str = "circle"
    color: tp.Tuple[int, int, int] = (240, 200, 60)
    size: float = 0.15
    center: tp.Tuple[float, float] = (0.5, 0.5)
    orbit: float = 0.25
    speed: float = 0.25
    phase: float = 0.0


@dataclass
class Scene:
    """A shot: a vertical gradient background, a brightness gain, shapes; lasts `duration` seconds.

    The background can carry stripes (relative `stripes` amplitude, `stripe_period` in frame units) that move at
    `pan` (x, y velocity in frames per second, across the stripes), as a camera panning over a textured wall.
    """
    duration: float
    top: tp.Tuple[int, int, int] = (20, 30, 80)
    bottom: tp.Tuple[int, int, int] = (90, 40, 120)
    brightness: float = 1.0
    shapes: tp.List[Shape] = field(default_factory=list)
    stripes: float = 0.0
    stripe_period: float = 0.5
    pan: tp.Tuple[float, float] = (0.0, 0.0)


def render(scene: Scene, t: float, width: int, height: int) -> np.ndarray:
    """RGB uint8 `[H, W, 3]` of `scene` at time `t` (s from the scene start)."""
    ramp = np.linspace(0.0, 1.0, height)[:, None, None]
    image = (1 - ramp) * np.array(scene.top) + ramp * np.array(scene.bottom)
    image = np.repeat(image, width, axis=1)
    ys, xs = np.mgrid[0:height, 0:width]
    scale = min(width, height)
    speed = math.hypot(*scene.pan)
    if scene.stripes and speed:
        across = (xs * scene.pan[0] + ys * scene.pan[1]) / (speed * scale)  # frame units along the pan
        wave = np.sin(2 * math.pi * (across - speed * t) / scene.stripe_period)
        image = image * (1 + scene.stripes * wave)[..., None]
    for shape in scene.shapes:
        angle = 2 * math.pi * (shape.speed * t + shape.phase)
        cx = (shape.center[0] + shape.orbit * math.cos(angle) * scale / width) * width
        cy = (shape.center[1] + shape.orbit * math.sin(angle) * scale / height) * height
        radius = shape.size * scale / 2
        dx, dy = xs - cx, ys - cy
        if shape.kind == "circle":
            inside = dx ** 2 + dy ** 2 <= radius ** 2
        elif shape.kind == "square":
            inside = (np.abs(dx) <= radius) & (np.abs(dy) <= radius)
        else:  # triangle pointing up
            inside = (dy <= radius) & (dy >= -radius) & (np.abs(dx) <= (dy + radius) / 2)
        image[inside] = shape.color
    return np.clip(image * scene.brightness, 0, 255).astype(np.uint8)


def write_scenes(path: tp.Union[str, Path], scenes: tp.Sequence[Scene], fps: tp.Union[int, Fraction] = 25,
                 size: tp.Tuple[int, int] = (320, 180), audio: tp.Optional[np.ndarray] = None,
                 audio_rate: int = 32000) -> Path:
    """Write scenes back to back as an h264 mp4 (`size` = width, height), with an optional mono AAC track."""
    width, height = size
    rate = Fraction(fps)
    with atomic_output(path) as tmp, av.open(str(tmp), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.time_base = 1 / rate
        audio_stream = None
        if audio is not None:  # every stream is declared before the first packet
            audio_stream = container.add_stream("aac", rate=audio_rate)
            audio_stream.layout = "mono"
        index = 0
        for scene in scenes:
            for k in range(round(scene.duration * rate)):
                frame = av.VideoFrame.from_ndarray(render(scene, k / float(rate), width, height), format="rgb24")
                frame.pts, frame.time_base = index, 1 / rate
                container.mux(stream.encode(frame))
                index += 1
        container.mux(stream.encode(None))
        if audio is not None and audio_stream is not None:
            for start in range(0, len(audio), 1024):
                chunk = np.ascontiguousarray(audio[None, start:start + 1024], dtype=np.float32)
                frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
                frame.sample_rate, frame.pts, frame.time_base = audio_rate, start, Fraction(1, audio_rate)
                container.mux(audio_stream.encode(frame))
            container.mux(audio_stream.encode(None))
    return Path(path)


def write_image(path: tp.Union[str, Path], scene: Scene, size: tp.Tuple[int, int] = (480, 320)) -> Path:
    """Write one frame of `scene` as an image (format from the suffix: png, jpg, webp)."""
    with atomic_output(path) as tmp, av.open(str(tmp), "w", format="image2") as container:
        codec = {".png": "png", ".jpg": "mjpeg", ".jpeg": "mjpeg", ".webp": "libwebp"}[Path(path).suffix.lower()]
        stream = container.add_stream(codec, rate=1)
        stream.width, stream.height = size
        stream.pix_fmt = "rgb24" if codec == "png" else ("yuvj420p" if codec == "mjpeg" else "yuv420p")
        frame = av.VideoFrame.from_ndarray(render(scene, 0.0, *size), format="rgb24").reformat(format=stream.pix_fmt)
        frame.pts, frame.time_base = 0, Fraction(1, 1)
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return Path(path)


def random_scene(rng: np.random.Generator, duration: float, num_shapes: int = 3) -> Scene:
    """A scene with random colours, shapes, speeds and brightness."""
    def color():
        return tuple(int(c) for c in rng.integers(0, 256, 3))
    shapes = [Shape(kind=str(rng.choice(SHAPES)), color=color(), size=float(rng.uniform(0.1, 0.3)),
                    center=(float(rng.uniform(0.3, 0.7)), float(rng.uniform(0.3, 0.7))),
                    orbit=float(rng.uniform(0.1, 0.3)), speed=float(rng.uniform(0.05, 0.5)),
                    phase=float(rng.uniform(0, 1))) for _ in range(num_shapes)]
    return Scene(duration, color(), color(), float(rng.uniform(0.5, 1.2)), shapes)


def melody(duration: float, rate: int = 32000, seed: int = 0) -> np.ndarray:
    """A plain sine arpeggio, for videos that should carry their own audio track."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(duration * rate)) / rate
    notes = 220 * 2 ** (rng.choice([0, 3, 5, 7, 10, 12], size=int(duration * 4) + 1) / 12)
    freq = notes[(t * 4).astype(int)]
    return (0.2 * np.sin(2 * np.pi * np.cumsum(freq) / rate) * np.exp(-(t * 4 % 1) * 3)).astype(np.float32)


def write_examples(folder: tp.Union[str, Path], seed: int = 2025) -> tp.List[Path]:
    """The example inputs of `infer.sh`: a landscape clip with a cut and its own audio, a 9:16 portrait clip,
    a 40 s clip (two generation windows) and a still image."""
    folder = Path(folder)
    rng = np.random.default_rng(seed)
    return [
        write_scenes(folder / "shapes_with_cut.mp4", [random_scene(rng, 4.0), random_scene(rng, 3.6)], 25,
                     (320, 180), audio=melody(7.6, seed=seed)),
        write_scenes(folder / "portrait.mp4", [random_scene(rng, 5.0, num_shapes=2)], 30, (180, 320)),
        write_scenes(folder / "long_drive.mp4", [random_scene(rng, 20.0), random_scene(rng, 20.0)], 24, (192, 108)),
        write_image(folder / "still.png", random_scene(rng, 1.0), (320, 240)),
    ]


def write_training_examples(folder: tp.Union[str, Path], count: int = 4, duration: float = 12.0,
                            seed: int = 7) -> tp.List[Path]:
    """Example training pairs: videos whose own audio track is the music (a melody per video)."""
    folder = Path(folder)
    rng = np.random.default_rng(seed)
    half = duration / 2
    return [write_scenes(folder / f"pair_{i:02d}.mp4", [random_scene(rng, half), random_scene(rng, half)], 15,
                         (160, 96), audio=melody(duration, seed=seed + i)) for i in range(count)]


def main(argv: tp.Optional[tp.Sequence[str]] = None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", help="folder to write the example inputs of infer.sh to")
    parser.add_argument("--train_examples", help="folder to write example training pairs to")
    parser.add_argument("--seed", type=int, default=2025)
    args = parser.parse_args(argv)
    if not args.examples and not args.train_examples:
        parser.error("pass --examples and/or --train_examples")
    paths = write_examples(args.examples, args.seed) if args.examples else []
    paths += write_training_examples(args.train_examples) if args.train_examples else []
    for path in paths:
        print(path)


if __name__ == "__main__":
    main()
