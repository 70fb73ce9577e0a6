"""On-disk cache of CLIP frame tokens, so that training epochs neither decode videos nor run CLIP.

The CLIP tower is frozen, so its tokens for a video never change: they are computed once per video (local frames
at `local_fps` over the whole video, and the global frames) and stored as float16 in `<folder>/<key>.pt`. The key
hashes the video's path, size and modification time, the CLIP weights' fingerprint and the sampling settings, so
a changed video (or CLIP, or setting) gets new features; stale files are simply never read again.
"""

from pathlib import Path
import typing as tp

import torch
from tqdm import tqdm

from ..media.video import load_video_frames
from ..utils.atomic import atomic_output
from ..utils.checksum import file_key


class FeatureCache:
    """CLIP tokens per video.

    Args:
        folder: cache folder.
        fingerprint: `module_fingerprint` of the CLIP tower the tokens come from.
        local_fps, num_global_frames, frame_size, resize_mode: frame sampling (as the dataset's).
    """

    def __init__(self, folder: tp.Union[str, Path], fingerprint: str, local_fps: float = 2.0,
                 num_global_frames: int = 32, frame_size: int = 224, resize_mode: str = "squash"):
        self.folder = Path(folder)
        self.fingerprint = fingerprint
        self.local_fps = local_fps
        self.num_global_frames = num_global_frames
        self.frame_size = frame_size
        self.resize_mode = resize_mode

    def path_for(self, video: tp.Union[str, Path]) -> Path:
        key = file_key(video, self.fingerprint, self.local_fps, self.num_global_frames, self.frame_size,
                       self.resize_mode)
        return self.folder / f"{key}.pt"

    def build(self, videos: tp.Iterable[tp.Union[str, Path]], clip_tokens: tp.Callable[[torch.Tensor], torch.Tensor],
              chunk: int = 64, progress: bool = True) -> int:
        """Compute the tokens of every video not cached yet with `clip_tokens` (uint8 `[N, 3, H, W]` ->
        `[N, P, D]`). Returns the number of videos computed."""
        todo = sorted({str(v) for v in videos if not self.path_for(v).exists()})
        for video in tqdm(todo, desc="CLIP features", unit="video", disable=not progress or not todo):
            frames = load_video_frames(video, local_fps=self.local_fps, num_global_frames=self.num_global_frames,
                                       size=self.frame_size, resize_mode=self.resize_mode)
            local = frames.local_frames.permute(1, 0, 2, 3)
            tokens = torch.cat([clip_tokens(local[i:i + chunk]).half().cpu() for i in range(0, len(local), chunk)])
            glob = clip_tokens(frames.global_frames.permute(1, 0, 2, 3)).half().cpu()
            with atomic_output(self.path_for(video)) as tmp:
                torch.save({"local": tokens, "global": glob, "video": video}, tmp)
        return len(todo)

    def whole(self, video: tp.Union[str, Path]) -> tp.Tuple[torch.Tensor, torch.Tensor]:
        """Tokens of all the local frames of `video` (`[Tl, P, D]`, at `local_fps` over the whole video) and of
        its global frames (`[Tg, P, D]`), float32."""
        path = self.path_for(video)
        if not path.exists():
            raise FileNotFoundError(f"no cached features for {video} (build the cache first)")
        cached = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        return cached["local"].float(), cached["global"].float()

    def segment(self, video: tp.Union[str, Path], start: float, duration: float
                ) -> tp.Tuple[torch.Tensor, torch.Tensor]:
        """Tokens of the local frames of `[start, start + duration)` (`[Tl, P, D]`, the last frame repeated past
        the end of the video) and of the global frames (`[Tg, P, D]`), float32."""
        local, glob = self.whole(video)
        first = round(start * self.local_fps)
        count = round(duration * self.local_fps)
        index = torch.arange(first, first + count).clamp(max=local.shape[0] - 1)
        return local[index], glob
