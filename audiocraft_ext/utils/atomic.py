"""Atomic file output: write to a temporary file beside the target, rename over it only when complete."""

from contextlib import contextmanager
import os
from pathlib import Path
import tempfile
import typing as tp


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_output(path: tp.Union[str, Path]) -> tp.Iterator[Path]:
    """Yield a temporary path in the target's folder (same suffix, so tools pick the format from it); on success
    rename it to `path`, on any error remove it. Readers never see a half-written `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
