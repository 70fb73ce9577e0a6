"""Procedural videos: moving shapes over backgrounds of several families, a moving camera, lighting and scene cuts,
rendered with numpy, written with PyAV. Used for the example videos in `dataset/example/infer/` and for tests.

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

SHAPES = ("circle", "square", "triangle", "diamond", "ring")
BACKGROUNDS = ("flat", "gradient", "texture", "landscape", "bokeh")
LIGHTINGS = ("gain", "exposure", "spot")


@dataclass
class Shape:
    """A moving shape, in frame units (the shorter side is 1; centre `(x, y)` in [0, 1] of each side).

    `path="orbit"`: a circle of radius `orbit` around `center` at `speed` turns per second, from `phase`;
    `path="drift"`: a straight line from `center` in `direction` (radians) at the same linear speed as that orbit
    (2 pi `orbit` `speed` frames per second), wrapping around the frame's edges.
    """
    kind: str = "circle"
    color: tp.Tuple[int, int, int] = (240, 200, 60)
    size: float = 0.15
    center: tp.Tuple[float, float] = (0.5, 0.5)
    orbit: float = 0.25
    speed: float = 0.25
    phase: float = 0.0
    path: str = "orbit"
    direction: float = 0.0


@dataclass
class Scene:
    """A shot: a background, shapes in front of it, a camera and a light; lasts `duration` seconds.

    Backgrounds (`background`, colours `top` and `bottom`, random details from `pattern_seed`): `flat`, `gradient`
    (vertical), `texture` (a sum of random plane waves, like plaster or clouds), `landscape` (sky, sun and three
    mountain ridges with parallax) and `bokeh` (out-of-focus lights over a dark ground). `stripes` (relative
    amplitude, `stripe_period` in frame units, across the pan, or at `stripe_angle` without one) overlays any of
    them. The camera moves over the background only (the shapes are in front of it): `pan` (x, y velocity in
    frames per second) and `zoom` (log scale per second, > 0 zooms in).
    `lighting` sets how `brightness` reaches the picture: `gain` scales the pixel values, `exposure` the linear
    light before a film-like tone curve, `spot` the intensity of a light at `light` (frame units) over a dim
    ambient light.
    """
    duration: float
    top: tp.Tuple[int, int, int] = (20, 30, 80)
    bottom: tp.Tuple[int, int, int] = (90, 40, 120)
    brightness: float = 1.0
    shapes: tp.List[Shape] = field(default_factory=list)
    stripes: float = 0.0
    stripe_period: float = 0.5
    pan: tp.Tuple[float, float] = (0.0, 0.0)
    background: str = "gradient"
    pattern_seed: int = 0
    stripe_angle: float = 0.0
    zoom: float = 0.0
    lighting: str = "gain"
    light: tp.Tuple[float, float] = (0.5, 0.3)


def _background(scene: Scene, u: np.ndarray, v: np.ndarray, x: np.ndarray, y: np.ndarray, zoom: float
                ) -> np.ndarray:
    """Float RGB `[H, W, 3]` (0-255 scale) of the background at world coordinates `u, v`; `x` (frame units) and
    `y` (rows in [0, 1]) are screen coordinates, for what the camera does not move: gradients, the sun; `zoom`
    scales the landscape's ridges about the horizon's middle row."""
    top, bottom = np.array(scene.top, dtype=np.float64), np.array(scene.bottom, dtype=np.float64)
    rng = np.random.default_rng(scene.pattern_seed)
    if scene.background == "flat":
        return np.broadcast_to(top, (*u.shape, 3)).copy()
    if scene.background == "gradient":
        return (1 - y[..., None]) * top + y[..., None] * bottom
    if scene.background == "texture":
        noise = np.zeros_like(u)
        for _ in range(6):
            frequency, angle = rng.uniform(1.0, 7.0), rng.uniform(0, 2 * math.pi)
            noise += np.sin(2 * math.pi * frequency * (u * math.cos(angle) + v * math.sin(angle))
                            + rng.uniform(0, 2 * math.pi)) / frequency
        mix = np.clip(0.5 + noise / 2.5, 0, 1)[..., None]
        return (1 - mix) * top + mix * bottom
    if scene.background == "landscape":
        sky = (1 - y[..., None]) * np.minimum(top * 1.3, 255) + y[..., None] * top
        sun = (x - rng.uniform(0.2, 0.8)) ** 2 + (y - rng.uniform(0.1, 0.3)) ** 2 < 0.08 ** 2  # at infinity
        image = np.where(sun[..., None], np.array([255.0, 240.0, 200.0]), sky)
        for depth, parallax in enumerate((0.3, 0.6, 1.0)):  # far to near: nearer ridges move faster
            x = u * parallax
            ridge = 0.45 + 0.15 * depth + sum(rng.uniform(0.02, 0.07) * np.sin(2 * math.pi * (f * x + rng.uniform()))
                                               for f in (0.7, 1.9, 4.3))
            haze = 0.5 * (2 - depth) / 2  # far ridges fade into the sky
            color = (1 - haze) * bottom * (0.6 + 0.2 * depth) + haze * top
            image = np.where((0.5 + (y - 0.5) / zoom > ridge)[..., None], color, image)
        return image
    if scene.background == "bokeh":
        image = np.broadcast_to(bottom * 0.3, (*u.shape, 3)).copy()
        for _ in range(10):  # lights on a 1.5-frame tile, so that a pan never runs out of them
            du = (u - rng.uniform(-0.75, 0.75) + 0.75) % 1.5 - 0.75
            dv = (v - rng.uniform(-0.75, 0.75) + 0.75) % 1.5 - 0.75
            glow = np.exp(-(du ** 2 + dv ** 2) / (2 * rng.uniform(0.04, 0.12) ** 2))
            image += glow[..., None] * (0.6 * top + 0.4 * 255) * rng.uniform(0.4, 0.9)
        return image
    raise ValueError(f"unknown background {scene.background!r} (one of {', '.join(BACKGROUNDS)})")


def _shape_mask(shape: Shape, t: float, xs: np.ndarray, ys: np.ndarray, width: int, height: int) -> np.ndarray:
    scale = min(width, height)
    if shape.path == "drift":
        step = 2 * math.pi * shape.orbit * shape.speed * t
        margin = shape.size * scale / 2
        cx = (shape.center[0] * width + step * math.cos(shape.direction) * scale + margin) % (width + 2 * margin)
        cy = (shape.center[1] * height + step * math.sin(shape.direction) * scale + margin) % (height + 2 * margin)
        cx, cy = cx - margin, cy - margin
    else:
        angle = 2 * math.pi * (shape.speed * t + shape.phase)
        cx = (shape.center[0] + shape.orbit * math.cos(angle) * scale / width) * width
        cy = (shape.center[1] + shape.orbit * math.sin(angle) * scale / height) * height
    radius = shape.size * scale / 2
    dx, dy = xs - cx, ys - cy
    if shape.kind == "circle":
        return dx ** 2 + dy ** 2 <= radius ** 2
    if shape.kind == "square":
        return (np.abs(dx) <= radius) & (np.abs(dy) <= radius)
    if shape.kind == "diamond":
        return np.abs(dx) + np.abs(dy) <= radius
    if shape.kind == "ring":
        return (dx ** 2 + dy ** 2 <= radius ** 2) & (dx ** 2 + dy ** 2 >= (0.6 * radius) ** 2)
    return (dy <= radius) & (dy >= -radius) & (np.abs(dx) <= (dy + radius) / 2)  # triangle pointing up


def _light(scene: Scene, image: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """`image` lit at `scene.brightness` (the same picture is brighter for a higher value, whatever the
    lighting)."""
    if scene.lighting == "gain":
        return image * scene.brightness
    if scene.lighting == "exposure":
        linear = (np.clip(image, 0, 255) / 255) ** 2.2
        exposed = (1 - np.exp(-2.0 * scene.brightness * linear)) / (1 - math.exp(-2.0))
        return 255 * np.clip(exposed, 0, 1) ** (1 / 2.2)
    if scene.lighting == "spot":
        light = 0.35 + 0.65 * np.exp(-((x - scene.light[0]) ** 2 + (y - scene.light[1]) ** 2) / (2 * 0.35 ** 2))
        return image * (scene.brightness * light / light.mean())[..., None]
    raise ValueError(f"unknown lighting {scene.lighting!r} (one of {', '.join(LIGHTINGS)})")


def render(scene: Scene, t: float, width: int, height: int) -> np.ndarray:
    """RGB uint8 `[H, W, 3]` of `scene` at time `t` (s from the scene start)."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    scale = min(width, height)
    x, y = xs / scale, ys / height        # frame units across, screen rows in [0, 1]
    zoom = math.exp(scene.zoom * t)
    u = (xs - width / 2) / scale / zoom - scene.pan[0] * t    # world coordinates: the camera moves, not the world
    v = (ys - height / 2) / scale / zoom - scene.pan[1] * t
    image = _background(scene, u, v, x, y, zoom)
    if scene.stripes:
        speed = math.hypot(*scene.pan)
        angle = math.atan2(scene.pan[1], scene.pan[0]) if speed else scene.stripe_angle
        wave = np.sin(2 * math.pi * (u * math.cos(angle) + v * math.sin(angle)) / scene.stripe_period)
        image = image * (1 + scene.stripes * wave)[..., None]
    for shape in scene.shapes:
        image[_shape_mask(shape, t, xs, ys, width, height)] = shape.color
    return np.clip(_light(scene, image, x, y), 0, 255).astype(np.uint8)


def write_scenes(path: tp.Union[str, Path], scenes: tp.Sequence[Scene], fps: tp.Union[int, Fraction] = 25,
                 size: tp.Tuple[int, int] = (320, 180), audio: tp.Optional[np.ndarray] = None,
                 audio_rate: int = 32000, crf: tp.Optional[int] = None) -> Path:
    """Write scenes back to back as an h264 mp4 (`size` = width, height, even), with an optional mono AAC track;
    `crf` sets x264's compression (constant rate factor: 0 lossless .. 51 worst; its default is 23)."""
    width, height = size
    rate = Fraction(fps)
    with atomic_output(path) as tmp, av.open(str(tmp), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.time_base = 1 / rate
        if crf is not None:
            stream.options = {"crf": str(crf)}
        audio_stream = None
        if audio is not None:  # every stream is declared before the first packet
            audio_stream = container.add_stream("aac", rate=audio_rate)
            audio_stream.layout = "mono"
        index, end = 0, 0.0
        for scene in scenes:
            end += scene.duration
            start = index  # frames counted from the cumulative end times: the clip keeps its length at any rate
            for k in range(round(end * rate) - start):
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
