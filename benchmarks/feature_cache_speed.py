"""What the CLIP feature cache saves per training item.

Without the cache, every item decodes its frames (60 local + the global ones) and the solver runs CLIP on them;
with it, the item loads precomputed tokens. Measured here on a procedural 60 s 640x360 video with a ViT-B/32-sized
CLIP (random weights: the cost does not depend on them), 30 s segments, in one process.

    python benchmarks/feature_cache_speed.py [--items 6] [--global_frames 32]
"""

import argparse
from pathlib import Path
import tempfile
import time
import warnings

import numpy as np
import torch

from audiocraft_ext.data.feature_cache import FeatureCache
from audiocraft_ext.data.video_dataset import VideoAudioDataset, VideoAudioMeta
from audiocraft_ext.modules.visual import VideoEncoder, VisualConfig
from audiocraft_ext.synth.scenes import melody, random_scene, write_scenes
from audiocraft_ext.utils.checksum import module_fingerprint

warnings.filterwarnings("ignore")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=6)
    parser.add_argument("--global_frames", type=int, default=32)
    args = parser.parse_args()
    torch.manual_seed(0)
    encoder = VideoEncoder(VisualConfig(), output_dim=1024).eval()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        rng = np.random.default_rng(0)
        video = write_scenes(tmp / "clip.mp4", [random_scene(rng, 30.0), random_scene(rng, 30.0)], 25, (640, 360),
                             audio=melody(60.0))
        meta = [VideoAudioMeta(path=str(video), duration=60.0, sample_rate=32000, video_path=str(video))]
        common = dict(num_global_frames=args.global_frames, seek_mode="random", segment_duration=30.0,
                      sample_rate=32000, channels=1, num_samples=args.items, shuffle=True)
        plain = VideoAudioDataset(meta, **common)
        start = time.perf_counter()
        for index in range(args.items):
            _, local, glob, _ = plain[index]
            with torch.no_grad():
                encoder.tokens(local[None])
                encoder.tokens(glob[None])
        without = (time.perf_counter() - start) / args.items

        cache = FeatureCache(tmp / "cache", module_fingerprint(encoder.visual_encoder_model),
                             num_global_frames=args.global_frames)
        start = time.perf_counter()
        cache.build([video], encoder.clip_tokens, progress=False)
        build = time.perf_counter() - start
        cached = VideoAudioDataset(meta, feature_cache=cache, **common)
        start = time.perf_counter()
        for index in range(args.items):
            _, local, glob, _ = cached[index]
            encoder.tokens(local[None])
        with_cache = (time.perf_counter() - start) / args.items
    print(f"per 30 s item, {60} local + {args.global_frames} global frames, {torch.get_num_threads()} threads:")
    print(f"  decode + CLIP: {without:.2f} s;  cached tokens: {with_cache:.3f} s;  one-time cache build for the "
          f"60 s video: {build:.1f} s")
    print(f"speed-up: {without / with_cache:.1f}x")


if __name__ == "__main__":
    main()
