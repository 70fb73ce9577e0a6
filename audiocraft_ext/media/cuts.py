"""Scene cuts of a video: PySceneDetect's content detector, decoding with PyAV.

The content detector scores the change of hue, saturation and brightness between consecutive frames and marks
a cut where it exceeds `threshold`; on generated videos with known cuts it finds every cut at its exact frame
(tests/test_rhythm.py).
"""

import logging
from pathlib import Path
import typing as tp

from scenedetect import ContentDetector, SceneManager, VideoOpenFailure
from scenedetect.backends.pyav import VideoStreamAv

from .video import VideoReadError

logger = logging.getLogger(__name__)
# PySceneDetect sets its logger to INFO when imported: its "Detecting scenes..." would print for every video.
logging.getLogger("pyscenedetect").setLevel(logging.WARNING)

CUT_THRESHOLD = 27.0  # PySceneDetect's default content threshold
MIN_SHOT_SECONDS = 0.5


def detect_cuts(path: tp.Union[str, Path], duration: tp.Optional[float] = None, threshold: float = CUT_THRESHOLD,
                min_shot: float = MIN_SHOT_SECONDS) -> tp.List[float]:
    """Times (s from the first frame) of the scene cuts of a video, in its first `duration` seconds (default: all).

    Args:
        path: the video.
        duration: only look at the first `duration` seconds.
        threshold: content change that makes a cut (PySceneDetect's `ContentDetector` scale).
        min_shot: no two cuts closer than this many seconds.
    Raises `VideoReadError` when the file cannot be opened or decoded.
    """
    try:
        video = VideoStreamAv(str(path))
    except (VideoOpenFailure, OSError, ValueError) as err:
        raise VideoReadError(path, f"cannot read the video for cut detection ({err})") from None
    manager = SceneManager()
    manager.add_detector(ContentDetector(threshold=threshold, min_scene_len=float(min_shot)))
    try:
        manager.detect_scenes(video, end_time=duration, show_progress=False)
    except Exception as err:  # a decoding error deep in PyAV: name the file, not the traceback
        raise VideoReadError(path, f"cannot decode the video for cut detection ({err.__class__.__name__}: {err})"
                             ) from None
    cuts = [float(start.seconds) for start, _ in manager.get_scene_list()[1:]]
    if duration is not None:
        cuts = [c for c in cuts if c < duration]
    logger.debug("%s: %d cut(s) at %s", path, len(cuts), cuts)
    return cuts
