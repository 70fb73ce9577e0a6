"""Reading frames from videos with PyAV, sampled by timestamp.

VidMuse sees a video through two sets of frames:

- local (short-term) frames at `local_fps` (2 fps) over the span of audio being generated;
- global (long-term) frames spread evenly over the whole video.

The official release picks frames by index with a stride of `ceil(fps / 2)`, which drifts against the audio
at 25 fps. Here every frame is chosen by its presentation timestamp: the decoded frame whose timestamp is
nearest to the target time, so the drift is at most half a source frame at any frame rate, including
variable frame rates. Times are relative to the first video frame (containers may start at a non-zero pts).
"""

from dataclasses import dataclass, field
import logging
import math
from pathlib import Path
import typing as tp

import av
import numpy as np
import torch
from torch.nn import functional as F

logger = logging.getLogger(__name__)

FRAME_SIZE = 224
RESIZE_MODES = ("squash", "center_crop")
# When the next target time is this far ahead of the last decoded frame, seek instead of decoding through.
_SEEK_GAP_SECONDS = 3.0


class VideoReadError(RuntimeError):
    """A video (or image) could not be read. The message names the file and the problem."""

    def __init__(self, path: tp.Union[str, Path], reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


@dataclass
class VideoInfo:
    """Facts about a video file's first video stream.

    Attributes:
        path: the file.
        duration: seconds from the first frame's pts to the end of the last frame (last pts + its duration).
        start_time: pts of the first frame, in seconds.
        fps: average frame rate (frames per second).
        num_frames: number of video packets (frames) in the stream.
        width, height: size of the displayed picture, rotation applied.
        rotation: counter-clockwise rotation in degrees that the display matrix asks for (0, 90, 180, 270).
        has_audio: whether the file holds an audio stream.
    """
    path: str
    duration: float
    start_time: float
    fps: float
    num_frames: int
    width: int
    height: int
    rotation: int
    has_audio: bool


@dataclass
class VideoFrames:
    """Frames of one video ready for the visual encoder.

    Attributes:
        local_frames: uint8 `[C, T, H, W]`, frames at `local_fps` starting at `start`.
        global_frames: uint8 `[C, Tg, H, W]`, frames spread over the whole video.
        duration: seconds of music that go with these frames (the span the local frames cover).
        local_fps: rate of the local frames.
        local_times: `[T]` timestamps (s, from the video start) of the source frames picked for the local frames.
        global_times: `[Tg]` timestamps of the source frames picked for the global frames.
        path: source file, if any.
    """
    local_frames: torch.Tensor
    global_frames: torch.Tensor
    duration: float
    local_fps: float = 2.0
    local_times: torch.Tensor = field(default_factory=lambda: torch.zeros(0))
    global_times: torch.Tensor = field(default_factory=lambda: torch.zeros(0))
    path: tp.Optional[str] = None

    def __post_init__(self):
        for name in ("local_frames", "global_frames"):
            frames = getattr(self, name)
            if frames.dim() != 4 or frames.shape[0] != 3 or frames.dtype != torch.uint8:
                raise ValueError(f"{name} must be uint8 [3, T, H, W], got {tuple(frames.shape)} {frames.dtype}")
        if self.duration <= 0:
            raise ValueError(f"duration must be positive, got {self.duration}")
        expected = num_local_frames(self.duration, self.local_fps)
        if self.local_frames.shape[1] != expected:
            raise ValueError(f"{expected} local frames expected for {self.duration:.3f} s at {self.local_fps} fps, "
                             f"got {self.local_frames.shape[1]}")

    @property
    def num_local_frames(self) -> int:
        return self.local_frames.shape[1]

    def local_window(self, start_frame: int, num_frames: int) -> torch.Tensor:
        """Local frames `[C, n, H, W]` from `start_frame`, at most `num_frames` of them."""
        return self.local_frames[:, start_frame:start_frame + num_frames]


def num_local_frames(duration: float, fps: float) -> int:
    """Number of local frames covering `[0, duration)` at `fps`: frames at k / fps for k = 0, 1, ...

    A small tolerance keeps float noise (e.g. 5.0000001 s) from adding a frame.
    """
    return max(1, math.ceil(duration * fps - 1e-6))


def resize_frames(frames: torch.Tensor, size: int = FRAME_SIZE, mode: str = "squash") -> torch.Tensor:
    """Resize uint8 frames `[N, C, H, W]` to `[N, C, size, size]`.

    `squash` reproduces the release (torchvision 0.16 `Resize((224, 224))` on uint8 tensors): bilinear,
    half-pixel centres, no antialiasing, rounded back to uint8; the aspect ratio is not kept.
    `center_crop` scales the short side to `size` the same way, then crops the centre (keeps the aspect ratio).
    """
    if mode not in RESIZE_MODES:
        raise ValueError(f"resize mode must be one of {RESIZE_MODES}, got {mode!r}")
    _, _, height, width = frames.shape
    if mode == "squash":
        target = (size, size)
    else:
        scale = size / min(height, width)
        target = (max(size, round(height * scale)), max(size, round(width * scale)))
    if target != (height, width):
        resized = F.interpolate(frames.float(), size=target, mode="bilinear", align_corners=False, antialias=False)
        frames = resized.round_().clamp_(0, 255).to(torch.uint8)
    if mode == "center_crop":
        top = (frames.shape[2] - size) // 2
        left = (frames.shape[3] - size) // 2
        frames = frames[:, :, top:top + size, left:left + size]
    return frames.contiguous()


def _open(path: tp.Union[str, Path]) -> av.container.InputContainer:
    path = Path(path)
    if not path.exists():
        raise VideoReadError(path, "file not found")
    if path.is_dir():
        raise VideoReadError(path, "is a directory, not a video file")
    try:
        return av.open(str(path), mode="r")
    except (av.FFmpegError, UnicodeDecodeError, ValueError) as err:
        reason = getattr(err, "strerror", None) or str(err)
        raise VideoReadError(path, f"not a readable video or image ({reason})") from None


def _video_stream(container: av.container.InputContainer, path) -> av.video.stream.VideoStream:
    if not container.streams.video:
        raise VideoReadError(path, "no video stream")
    return container.streams.video[0]


def probe_video(path: tp.Union[str, Path]) -> VideoInfo:
    """Read the timing facts of a video from its packets, without decoding.

    The duration is defined from the video stream: last frame's pts + its duration - first frame's pts, so that
    containers without a `duration` field (mkv, webm) and non-zero start times are handled.
    Raises `VideoReadError` for a file that is not a video, has no video stream, or has no frames.
    """
    with _open(path) as container:
        stream = _video_stream(container, path)
        time_base = stream.time_base
        if time_base is None:
            raise VideoReadError(path, "video stream has no time base")
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        default_step = int(round(1 / (float(rate) * float(time_base)))) if rate else 0
        first, end, count = None, None, 0
        try:
            for packet in container.demux(stream):
                if packet.pts is None or packet.size == 0:
                    continue
                count += 1
                step = packet.duration or default_step
                first = packet.pts if first is None else min(first, packet.pts)
                end = packet.pts + step if end is None else max(end, packet.pts + step)
        except av.FFmpegError as err:
            if count == 0:
                raise VideoReadError(path, f"corrupt video data ({err})") from None
            logger.warning("%s: stream ends early (%s); using the %d frames before the error", path, err, count)
        if count == 0 or first is None or end is None:
            raise VideoReadError(path, "video stream has no frames")
        duration = float((end - first) * time_base)
        if duration <= 0:
            raise VideoReadError(path, "video has zero duration")
        width, height = stream.codec_context.width, stream.codec_context.height
        fps = float(rate) if rate else count / duration
        start_time = float(first * time_base)
        has_audio = bool(container.streams.audio)
    rotation = _first_frame_rotation(path)
    if rotation % 180:
        width, height = height, width
    return VideoInfo(path=str(path), duration=duration, start_time=start_time, fps=fps, num_frames=count,
                     width=width, height=height, rotation=rotation, has_audio=has_audio)


def _first_frame_rotation(path) -> int:
    """Rotation (0, 90, 180, 270, counter-clockwise) of the first decodable frame, from its display matrix."""
    with _open(path) as container:
        try:
            for frame in container.decode(_video_stream(container, path)):
                return int(round(frame.rotation / 90.0)) * 90 % 360
        except av.FFmpegError as err:
            raise VideoReadError(path, f"cannot decode video frames ({err})") from None
    raise VideoReadError(path, "no decodable video frame")


def _seek(container, stream, seconds: float, time_base: float) -> bool:
    """Seek to the key frame at or before `seconds` (stream time); False when the container cannot seek."""
    try:
        container.seek(int(seconds / time_base), stream=stream, backward=True)
    except av.FFmpegError:
        return False
    return True


def _frame_to_tensor(frame: av.VideoFrame) -> torch.Tensor:
    """RGB uint8 `[C, H, W]` of a decoded frame, with its display rotation applied (PyAV does not rotate)."""
    array = frame.to_ndarray(format="rgb24")
    quarter_turns = int(round(frame.rotation / 90.0)) % 4
    if quarter_turns:
        # `rotation` is counter-clockwise; np.rot90 also turns counter-clockwise.
        array = np.rot90(array, k=quarter_turns)
    return torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1)


def read_frames_at(path: tp.Union[str, Path], times: tp.Sequence[float],
                   info: tp.Optional[VideoInfo] = None) -> tp.Tuple[torch.Tensor, torch.Tensor]:
    """Decode the frames nearest to each of the `times` (s, from the first frame; sorted ascending).
    `info` is the video's `probe_video` result when the caller has it already.

    Returns:
        frames: uint8 `[N, C, H, W]` at the displayed size (rotation applied).
        picked: `[N]` float64 timestamps (s, from the first frame) of the frames returned.
    Times past the last frame get the last frame (padding by repetition).
    """
    targets = np.asarray(times, dtype=np.float64)
    if targets.size == 0:
        raise ValueError("no frame times requested")
    if np.any(np.diff(targets) < 0):
        raise ValueError("frame times must be sorted")
    info = info or probe_video(path)
    picker = _NearestFramePicker(targets)
    with _open(path) as container:
        stream = _video_stream(container, path)
        stream.thread_type = "AUTO"
        time_base = float(stream.time_base)
        seeked_for = -1
        try:
            while not picker.done:
                seek_target = None
                for frame in container.decode(stream):
                    if frame.pts is None:
                        continue
                    picker.push(frame.pts * time_base - info.start_time, frame)
                    if picker.done:
                        break
                    gap = picker.next_target - picker.last_time
                    if gap > _SEEK_GAP_SECONDS and picker.index != seeked_for:
                        seek_target = picker.next_target
                        break
                if seek_target is None:
                    break
                # Lands on the key frame at or before the target; frames already seen are skipped by the picker.
                seeked_for = picker.index
                if not _seek(container, stream, seek_target + info.start_time, time_base):
                    continue
        except av.FFmpegError as err:
            if picker.last is None:
                raise VideoReadError(path, f"cannot decode video frames ({err})") from None
            logger.warning("%s: decoding stopped early (%s); repeating the last good frame", path, err)
        if picker.last is None:
            raise VideoReadError(path, "no decodable video frame")
        picker.finish()
    size = picker.frames[0].shape[1:]
    frames = [f if f.shape[1:] == size else resize_to(f, size) for f in picker.frames]  # resolution changes
    return torch.stack(frames), torch.from_numpy(picker.picked)


def resize_to(frame: torch.Tensor, size: tp.Sequence[int]) -> torch.Tensor:
    """uint8 `[C, H, W]` resized (bilinear) to `size` = (H, W)."""
    resized = F.interpolate(frame[None].float(), size=tuple(size), mode="bilinear", align_corners=False)
    return resized[0].round_().clamp_(0, 255).to(torch.uint8)


class _NearestFramePicker:
    """Assigns to each target time the decoded frame nearest to it, seeing frames once, in time order.

    When a frame at time `c` arrives after a frame at `p`, every pending target `t` with `|p - t| <= |c - t|`
    lies before the midpoint of `p` and `c`, so no later frame can be nearer: it gets the frame at `p`.
    """

    def __init__(self, targets: np.ndarray):
        self.targets = targets
        self.index = 0
        self.frames: tp.List[torch.Tensor] = []
        self.picked = np.zeros(len(targets))
        self.last: tp.Optional[tp.Tuple[float, av.VideoFrame]] = None
        self._converted: tp.Optional[tp.Tuple[float, torch.Tensor]] = None

    @property
    def done(self) -> bool:
        return self.index >= len(self.targets)

    @property
    def next_target(self) -> float:
        return float(self.targets[self.index])

    @property
    def last_time(self) -> float:
        return self.last[0] if self.last is not None else -math.inf

    def push(self, time: float, frame: av.VideoFrame):
        if self.last is not None and time <= self.last[0]:
            return  # already seen (decoding again after a seek)
        self._assign_until(time)
        self.last = (time, frame)

    def finish(self):
        """Targets past the last frame get the last frame."""
        self._assign_until(None)

    def _assign_until(self, candidate_time: tp.Optional[float]):
        while not self.done and self.last is not None:
            target = self.targets[self.index]
            if candidate_time is not None and abs(candidate_time - target) < abs(self.last[0] - target):
                break
            time, frame = self.last
            if self._converted is None or self._converted[0] != time:
                self._converted = (time, _frame_to_tensor(frame))
            self.frames.append(self._converted[1])
            self.picked[self.index] = time
            self.index += 1


def local_frame_times(start: float, duration: float, fps: float = 2.0) -> np.ndarray:
    """Times `start + k / fps` of the local frames covering `[start, start + duration)`."""
    return start + np.arange(num_local_frames(duration, fps)) / fps


def global_frame_times(video_duration: float, num_frames: int, fps: float) -> np.ndarray:
    """`num_frames` times spread evenly from the first to the last frame of a video.

    The release takes `linspace(0, frame_count - 1, n)` frame indices; by time that is
    `linspace(0, last_frame_time, n)`, with the last frame starting one frame period before the end.
    """
    last_frame_time = max(0.0, video_duration - 1.0 / fps) if fps > 0 else 0.0
    return np.linspace(0.0, last_frame_time, num_frames)


def load_video_frames(path: tp.Union[str, Path], start: float = 0.0, duration: tp.Optional[float] = None,
                      local_fps: float = 2.0, num_global_frames: int = 32, size: int = FRAME_SIZE,
                      resize_mode: str = "squash", info: tp.Optional[VideoInfo] = None) -> VideoFrames:
    """Read the local and global frames of a video.

    Args:
        path: video file.
        start: start of the span (s from the first frame) that the local frames cover.
        duration: length of that span; default: to the end of the video. Local frames past the end of the
            video repeat the last frame.
        local_fps: rate of the local frames (2 for VidMuse).
        num_global_frames: frames spread over the whole video (32 at inference as released, 64 in its training).
        size: output frame side.
        resize_mode: `squash` (as the official weights were trained) or `center_crop`.
        info: the video's `probe_video` result when the caller has it already.
    Returns:
        `VideoFrames` with local frames `[3, ceil(duration * local_fps), size, size]` and global frames
        `[3, num_global_frames, size, size]`.
    """
    info = info or probe_video(path)
    if duration is None:
        duration = info.duration - start
    if start < 0 or duration <= 0:
        raise VideoReadError(path, f"empty span: start {start:.3f} s, duration {duration:.3f} s "
                                   f"(video is {info.duration:.3f} s long)")
    local_t = local_frame_times(start, duration, local_fps)
    global_t = global_frame_times(info.duration, num_global_frames, info.fps)
    # One decoding pass serves both sets: decode the union of the targets in time order.
    all_t = np.concatenate([local_t, global_t])
    order = np.argsort(all_t, kind="stable")
    frames, picked = read_frames_at(path, all_t[order], info)
    frames = resize_frames(frames, size, resize_mode)
    inverse = torch.from_numpy(np.argsort(order, kind="stable"))
    frames, picked = frames[inverse], picked[inverse]
    n_local = len(local_t)
    return VideoFrames(
        local_frames=frames[:n_local].permute(1, 0, 2, 3).contiguous(),
        global_frames=frames[n_local:].permute(1, 0, 2, 3).contiguous(),
        duration=float(duration), local_fps=local_fps,
        local_times=picked[:n_local], global_times=picked[n_local:], path=str(path))


def read_image(path: tp.Union[str, Path]) -> torch.Tensor:
    """Decode a still image (jpg, png, webp, ...) to uint8 `[3, H, W]` with PyAV."""
    with _open(path) as container:
        try:
            for frame in container.decode(_video_stream(container, path)):
                return _frame_to_tensor(frame)
        except av.FFmpegError as err:
            raise VideoReadError(path, f"cannot decode the image ({err})") from None
    raise VideoReadError(path, "no picture in the file")


def still_video_frames(image: torch.Tensor, duration: float, local_fps: float = 2.0, num_global_frames: int = 32,
                       size: int = FRAME_SIZE, resize_mode: str = "squash",
                       path: tp.Optional[str] = None) -> VideoFrames:
    """An image `[3, H, W]` seen as a still video of `duration` seconds: every frame is the image."""
    if duration <= 0:
        raise ValueError(f"duration must be positive, got {duration}")
    frame = resize_frames(image[None], size, resize_mode)[0]
    num_local = num_local_frames(duration, local_fps)
    return VideoFrames(
        local_frames=frame[:, None].expand(-1, num_local, -1, -1).contiguous(),
        global_frames=frame[:, None].expand(-1, num_global_frames, -1, -1).contiguous(),
        duration=duration, local_fps=local_fps, local_times=torch.arange(num_local, dtype=torch.float64) / local_fps,
        global_times=torch.from_numpy(np.linspace(0.0, duration, num_global_frames)), path=path)
