"""Put generated music under a video, in-process with PyAV (no ffmpeg program, no waiting on a subprocess).

The video stream is copied packet for packet where the mp4 container allows it (re-encoded to h264 otherwise);
the music is encoded as 48 kHz AAC, the rate video editors expect. The original audio can be dropped, kept as a
second track, or mixed under the music. Outputs are written atomically.
"""

from dataclasses import dataclass
from fractions import Fraction
import logging
from pathlib import Path
import typing as tp

import av
import numpy as np
import torch
import torchaudio

from ..utils.atomic import atomic_output
from .audio import align_audio, read_audio_track
from .video import VideoInfo, VideoReadError, probe_video

logger = logging.getLogger(__name__)

AAC_SAMPLE_RATE = 48000
AAC_BIT_RATE = 192_000
ORIGINAL_AUDIO_MODES = ("drop", "keep", "mix")
# Codecs the mp4 muxer takes as they are; anything else is re-encoded to h264.
MP4_VIDEO_CODECS = {"h264", "hevc", "mpeg4", "av1", "vp9", "mpeg2video", "mpeg1video"}


@dataclass
class MuxResult:
    """What `mux_music` wrote: whether the video was copied, and the audio tracks."""
    path: Path
    video_copied: bool
    audio_tracks: int


def _resample(wav: torch.Tensor, sample_rate: int, target_rate: int) -> torch.Tensor:
    if sample_rate == target_rate:
        return wav
    return torchaudio.functional.resample(wav, sample_rate, target_rate)


def _encode_aac(container: av.container.OutputContainer, wav: torch.Tensor, start_time: float
                ) -> tp.Tuple[av.audio.stream.AudioStream, tp.List[av.Packet]]:
    """Encode `[C, N]` float audio at 48 kHz into a new AAC stream; returns the stream and its packets."""
    channels = wav.shape[0]
    stream = container.add_stream("aac", rate=AAC_SAMPLE_RATE)
    stream.layout = "mono" if channels == 1 else "stereo"
    stream.bit_rate = AAC_BIT_RATE
    samples = wav.clamp(-1, 1).float().numpy()
    first = round(start_time * AAC_SAMPLE_RATE)
    packets: tp.List[av.Packet] = []
    for offset in range(0, samples.shape[1], 1024):
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples[:, offset:offset + 1024]), format="fltp",
                                           layout=stream.layout.name)
        frame.sample_rate = AAC_SAMPLE_RATE
        frame.time_base = Fraction(1, AAC_SAMPLE_RATE)
        frame.pts = first + offset
        packets.extend(stream.encode(frame))
    packets.extend(stream.encode(None))
    return stream, packets


def _audio_tracks(video: Path, info: VideoInfo, music: torch.Tensor, sample_rate: int, original_audio: str,
                  original_volume: float, duration: float) -> tp.List[torch.Tensor]:
    """The audio tracks of the output, at 48 kHz, each `[C, round(duration * 48000)]`."""
    num_samples = round(duration * AAC_SAMPLE_RATE)
    music48 = _resample(music.float(), sample_rate, AAC_SAMPLE_RATE)
    music48 = torch.nn.functional.pad(music48, (0, max(0, num_samples - music48.shape[1])))[:, :num_samples]
    if original_audio == "drop" or not info.has_audio:
        if original_audio != "drop":
            logger.info("%s has no audio track: nothing to %s", video, original_audio)
        return [music48]
    original, start = read_audio_track(video, AAC_SAMPLE_RATE, channels=music48.shape[0])
    original = align_audio(original, start - info.start_time, AAC_SAMPLE_RATE, num_samples)
    if original_audio == "keep":
        return [music48, original]
    mixed = music48 + original_volume * original
    peak = float(mixed.abs().max())
    return [mixed / peak if peak > 1 else mixed]


def _even(value: int) -> int:
    return max(2, value - value % 2)


def mux_music(video: tp.Union[str, Path], music: torch.Tensor, sample_rate: int, out: tp.Union[str, Path],
              original_audio: str = "drop", original_volume: float = 0.5,
              duration: tp.Optional[float] = None, info: tp.Optional[VideoInfo] = None) -> MuxResult:
    """Write `out` (mp4): the video stream of `video` with `music` `[C, N]` as a 48 kHz AAC track.

    Args:
        video: source video.
        music: generated audio at `sample_rate`, as long as the part of the video to keep.
        out: output mp4 path (written atomically).
        original_audio: `drop` the source's audio, `keep` it as a second track, or `mix` it under the music
            at `original_volume`.
        duration: seconds of video to keep from its first frame (default: all of it; a shorter duration
            re-encodes the video, which cannot be cut cleanly without decoding).
        info: the video's `probe_video` result when the caller has it already.
    """
    if original_audio not in ORIGINAL_AUDIO_MODES:
        raise ValueError(f"original_audio must be one of {ORIGINAL_AUDIO_MODES}, got {original_audio!r}")
    video = Path(video)
    info = info or probe_video(video)
    duration = info.duration if duration is None else min(duration, info.duration)
    tracks = _audio_tracks(video, info, music, sample_rate, original_audio, original_volume, duration)
    with av.open(str(video)) as probe:
        codec = probe.streams.video[0].codec_context.name
    # A cut copy could keep B-frames whose later reference was dropped: cutting re-encodes.
    copy = codec in MP4_VIDEO_CODECS and duration >= info.duration - 1e-6
    if copy:
        try:
            return _write(video, info, tracks, Path(out), duration, copy=True)
        except av.FFmpegError as err:
            logger.info("%s: cannot copy its %s stream into mp4 (%s); re-encoding to h264", video, codec, err)
    return _write(video, info, tracks, Path(out), duration, copy=False)


def _write(video: Path, info: VideoInfo, tracks: tp.List[torch.Tensor], out: Path, duration: float,
           copy: bool) -> MuxResult:
    end_time = info.start_time + duration
    with atomic_output(out) as tmp, av.open(str(video)) as src, av.open(str(tmp), "w", format="mp4") as dst:
        vin = src.streams.video[0]
        if copy:
            vout = dst.add_stream_from_template(vin)
        else:
            vout = dst.add_stream("libx264", rate=vin.average_rate or vin.guessed_rate or 25)
            vout.width, vout.height = _even(vin.codec_context.width), _even(vin.codec_context.height)
            vout.pix_fmt = "yuv420p"
            vout.codec_context.time_base = vin.time_base
            if info.rotation:
                vout.set_display_rotation(info.rotation)
        audio = [_encode_aac(dst, track, info.start_time) for track in tracks]
        pending = sorted(((p, s) for s, packets in audio for p in packets),
                         key=lambda item: float(item[0].pts * item[0].time_base))
        next_audio = 0

        def mux_audio_until(time: float):
            nonlocal next_audio
            while next_audio < len(pending):
                packet = pending[next_audio][0]
                if float(packet.pts * packet.time_base) > time:
                    break
                dst.mux(packet)
                next_audio += 1

        try:
            if copy:
                for packet in src.demux(vin):
                    if packet.size == 0:
                        continue  # demuxer flush marker
                    stamp = packet.dts if packet.dts is not None else packet.pts  # mkv may leave dts unset
                    if stamp is not None:
                        mux_audio_until(float(stamp * vin.time_base))
                    packet.stream = vout
                    dst.mux(packet)
            else:
                for frame in src.decode(vin):
                    if frame.pts is not None and float(frame.pts * vin.time_base) >= end_time - 1e-6:
                        break
                    mux_audio_until(float(frame.time or 0))
                    frame = frame.reformat(width=vout.width, height=vout.height, format="yuv420p")
                    dst.mux(vout.encode(frame))
                dst.mux(vout.encode(None))
        except av.FFmpegError as err:
            if not copy:
                raise VideoReadError(video, f"cannot re-encode the video ({err})") from None
            raise
        mux_audio_until(float("inf"))
    return MuxResult(out, copy, len(tracks))


def write_still_video(image: torch.Tensor, music: torch.Tensor, sample_rate: int, out: tp.Union[str, Path],
                      duration: float, fps: int = 25) -> MuxResult:
    """Write an mp4 showing `image` (uint8 `[3, H, W]`) for `duration` s with `music` as 48 kHz AAC."""
    out = Path(out)
    height, width = _even(image.shape[1]), _even(image.shape[2])
    picture = image[:, :height, :width].permute(1, 2, 0).contiguous().numpy()
    num_samples = round(duration * AAC_SAMPLE_RATE)
    music48 = _resample(music.float(), sample_rate, AAC_SAMPLE_RATE)[:, :num_samples]
    with atomic_output(out) as tmp, av.open(str(tmp), "w", format="mp4") as dst:
        vout = dst.add_stream("libx264", rate=fps)
        vout.width, vout.height, vout.pix_fmt = width, height, "yuv420p"
        audio_stream, packets = _encode_aac(dst, music48, 0.0)
        frame = av.VideoFrame.from_ndarray(picture, format="rgb24").reformat(format="yuv420p")
        frame.time_base = Fraction(1, fps)
        for index in range(max(1, round(duration * fps))):
            frame.pts = index
            for packet in vout.encode(frame):
                dst.mux(packet)
        for packet in vout.encode(None):
            dst.mux(packet)
        for packet in packets:
            dst.mux(packet)
    return MuxResult(out, False, 1)
