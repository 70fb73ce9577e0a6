"""Which files are videos, images or audio, by their extension: the one list of each that the project reads."""

from pathlib import Path
import typing as tp

VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".m4a", ".aac", ".opus")


def is_image(path: tp.Union[str, Path]) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def find_media(folder: Path, extensions: tp.Iterable[str]) -> tp.List[Path]:
    """Files directly in `folder` (not recursive) with one of `extensions` (`.mp4` or `mp4`, any case), sorted by
    name; hidden files are ignored."""
    wanted = {"." + e.lower().lstrip(".") for e in extensions}
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in wanted)
