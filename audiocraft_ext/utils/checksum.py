"""Checksums that tell inputs apart: a file's bytes, a file's identity, a module's weights."""

import hashlib
import json
from pathlib import Path
import typing as tp

import torch


def file_checksum(path: tp.Union[str, Path], chunk: int = 1 << 24) -> str:
    """sha256 of a file, read in chunks (a multi-GB checkpoint is never held in memory)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def file_key(path: tp.Union[str, Path], *extra: tp.Any) -> str:
    """sha1 of a file's identity (absolute path, size, modification time) and of `extra` JSON values: the name
    of a cache entry made from the file, which changes when the file (or an extra) does."""
    path = Path(path).resolve()
    stat = path.stat()
    return hashlib.sha1(json.dumps([str(path), stat.st_size, stat.st_mtime_ns, *extra]).encode()).hexdigest()


def module_fingerprint(module: torch.nn.Module) -> str:
    """sha1 of a module's state (names, shapes and values), e.g. to key caches by the weights that made them."""
    digest = hashlib.sha1()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]
