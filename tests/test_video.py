"""Frame reading: sampling by timestamp, resize semantics, rotation, errors."""

from fractions import Fraction

import av
import numpy as np
import pytest
import torch

from audiocraft_ext.media.video import (VideoReadError, load_video_frames, probe_video, read_frames_at,
                                        resize_frames)
from audiocraft_ext.models.vidmuse import plan_windows

from media import read_index, write_video


def bilinear_reference(image: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Bilinear resize with half-pixel centres and no antialiasing, in float64, rounded (numpy, per pixel)."""
    channels, in_h, in_w = image.shape
    out = np.zeros((channels, out_h, out_w))
    for y in range(out_h):
        sy = max((y + 0.5) * in_h / out_h - 0.5, 0.0)
        y0 = min(int(np.floor(sy)), in_h - 1)
        y1 = min(y0 + 1, in_h - 1)
        wy = sy - y0
        for x in range(out_w):
            sx = max((x + 0.5) * in_w / out_w - 0.5, 0.0)
            x0 = min(int(np.floor(sx)), in_w - 1)
            x1 = min(x0 + 1, in_w - 1)
            wx = sx - x0
            top = image[:, y0, x0] * (1 - wx) + image[:, y0, x1] * wx
            bottom = image[:, y1, x0] * (1 - wx) + image[:, y1, x1] * wx
            out[:, y, x] = top * (1 - wy) + bottom * wy
    return np.round(out)


def test_squash_resize_is_bilinear_without_antialias_on_uint8():
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, size=(3, 61, 97), dtype=np.uint8)  # non-square, odd sizes
    ours = resize_frames(torch.from_numpy(frame)[None], size=40, mode="squash")[0]
    assert ours.dtype == torch.uint8 and ours.shape == (3, 40, 40)
    reference = bilinear_reference(frame.astype(np.float64), 40, 40)
    diff = np.abs(ours.numpy().astype(np.float64) - reference)
    # float32 vs float64 may round an exact .5 the other way; anything else must match exactly
    assert diff.max() <= 1 and (diff == 0).mean() > 0.995


def test_center_crop_keeps_aspect_ratio():
    frame = torch.zeros(1, 3, 90, 160, dtype=torch.uint8)
    frame[..., 60:100] = 255  # a bright vertical band in the middle third
    cropped = resize_frames(frame, size=45, mode="center_crop")[0]
    squashed = resize_frames(frame, size=45, mode="squash")[0]
    assert cropped.shape == squashed.shape == (3, 45, 45)
    # the centre crop shows the band wider than the squash does (no horizontal squeeze)
    assert (cropped[0, 20] > 128).sum() > (squashed[0, 20] > 128).sum()
    with pytest.raises(ValueError):
        resize_frames(frame, mode="stretch")


@pytest.mark.parametrize("fps", [25, Fraction(30000, 1001), 30, 60])
def test_local_frames_follow_timestamps(tmp_path, fps):
    rate = float(fps)
    path = write_video(tmp_path / "v.mp4", int(6 * rate), fps)  # just under or at 6 s
    frames = load_video_frames(path, num_global_frames=4)
    assert frames.local_frames.shape == (3, 12, 224, 224) and frames.local_frames.dtype == torch.uint8
    for k in range(frames.num_local_frames):
        picked = float(frames.local_times[k])
        assert abs(picked - k / 2) <= 0.5 / rate + 1e-6
        # the pixels are those of the source frame at that timestamp
        assert read_index(frames.local_frames[:, k]) == round(picked * rate)


def test_variable_frame_rate_picks_nearest_frame(tmp_path):
    rng = np.random.default_rng(1)
    pts = np.cumsum(rng.uniform(0.02, 0.15, size=60))
    pts -= pts[0]
    path = write_video(tmp_path / "vfr.mp4", len(pts), 25, pts_seconds=pts)
    targets = np.arange(0, pts[-1], 0.5)
    frames, picked = read_frames_at(path, targets)
    for target, frame, time in zip(targets, frames, picked.numpy()):
        nearest = int(np.argmin(np.abs(pts - target)))
        assert read_index(frame) == nearest
        assert abs(time - pts[nearest]) < 1e-3


def test_global_frames_evenly_spread_over_whole_video(tmp_path):
    path = write_video(tmp_path / "v.mp4", 200, 25)  # 8 s
    frames = load_video_frames(path, start=2.0, duration=1.0, num_global_frames=9)
    assert frames.global_frames.shape == (3, 9, 224, 224)
    expected = np.linspace(0, 8.0 - 1 / 25, 9)
    assert np.allclose(frames.global_times.numpy(), expected, atol=0.5 / 25 + 1e-6)
    for k, t in enumerate(expected):  # the nearest source frame (either one on a tie)
        assert abs(read_index(frames.global_frames[:, k]) - t * 25) <= 0.5 + 1e-6
    # local frames cover only the requested span
    assert frames.local_times.tolist() == pytest.approx([2.0, 2.5], abs=0.5 / 25 + 1e-6)


def test_last_window_of_45s_video_gets_its_own_frames(tmp_path):
    fps = 10
    path = write_video(tmp_path / "long.mp4", 45 * fps, fps, size=(32, 24))
    frames = load_video_frames(path, num_global_frames=4, size=32)
    assert frames.num_local_frames == 90
    windows = plan_windows(45 * 50, 50, 2.0, window_seconds=30, stride_seconds=29.5)
    assert [(w.start_token, w.num_tokens, w.prompt_tokens) for w in windows] == [(0, 1500, 0), (1475, 775, 25)]
    last = windows[-1]
    local = frames.local_window(last.start_frame, last.num_frames)
    assert local.shape[1] == 31  # 15.5 s of audio from 29.5 s
    window_start = last.start_token / 50
    for k in range(local.shape[1]):
        assert read_index(local[:, k]) == round((window_start + k / 2) * fps)


def test_frames_past_the_end_repeat_the_last_frame(tmp_path):
    path = write_video(tmp_path / "short.mp4", 10, 10)  # 1 s
    frames = load_video_frames(path, duration=2.0, num_global_frames=2)
    indices = [read_index(frames.local_frames[:, k]) for k in range(4)]
    assert indices == [0, 5, 9, 9]


def test_rotation_metadata_is_applied(tmp_path):
    path = write_video(tmp_path / "rot.mp4", 5, 10, size=(64, 48), rotation=90)
    info = probe_video(path)
    assert (info.rotation, info.width, info.height) == (90, 48, 64)
    frames, _ = read_frames_at(path, [0.0])
    assert frames.shape == (1, 3, 64, 48)
    # bars were horizontal in the coded picture; turned a quarter counter-clockwise they stand vertically, the
    # top bar (most significant bit, 0 for frame 0 -> dark) now at the left; bit 11 (the last one) at the right
    row = frames[0, 0, 32].float()
    assert row[:3].mean() < 64 and row[-3:].mean() < 64
    assert (frames[0, 0, :, 10].float().std() < 10)  # uniform along the new vertical direction


def test_non_zero_start_time_and_duration_from_video_stream(tmp_path):
    pts = 1.5 + np.arange(30) / 10
    path = write_video(tmp_path / "offset.mp4", 30, 10, pts_seconds=pts)
    info = probe_video(path)
    assert info.start_time == pytest.approx(1.5, abs=1e-3)
    assert info.duration == pytest.approx(3.0, abs=1e-3)
    frames, picked = read_frames_at(path, [0.0, 1.0])
    assert [read_index(f) for f in frames] == [0, 10]


def test_bad_inputs_raise_clear_errors(tmp_path):
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video")
    with pytest.raises(VideoReadError, match="notes.mp4"):
        probe_video(text)
    with pytest.raises(VideoReadError, match="file not found"):
        probe_video(tmp_path / "missing.mp4")
    good = write_video(tmp_path / "good.mp4", 50, 25)
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(good.read_bytes()[:200])
    with pytest.raises(VideoReadError, match="truncated.mp4"):
        load_video_frames(truncated)


def test_resolution_change_mid_stream(tmp_path):
    """Two MPEG-TS segments of different sizes back to back: frames come out at one size."""
    def segment(path, size, start):
        with av.open(str(path), "w", format="mpegts") as container:
            stream = container.add_stream("libx264", rate=25)
            stream.width, stream.height = size
            stream.pix_fmt = "yuv420p"
            for i in range(50):
                frame = av.VideoFrame.from_ndarray(np.full((size[1], size[0], 3), 4 * i, np.uint8), format="rgb24")
                frame.pts = start + i
                container.mux(stream.encode(frame))
            container.mux(stream.encode(None))
    segment(tmp_path / "a.ts", (64, 48), 0)
    segment(tmp_path / "b.ts", (96, 64), 50)
    joined = tmp_path / "joined.ts"
    joined.write_bytes((tmp_path / "a.ts").read_bytes() + (tmp_path / "b.ts").read_bytes())
    frames = load_video_frames(joined, num_global_frames=4)
    assert frames.local_frames.shape[0] == 3 and frames.num_local_frames == 8
