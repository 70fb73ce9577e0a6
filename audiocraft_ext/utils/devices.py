"""The device that `auto` stands for, one rule for every command, loader and the trainer."""

import typing as tp

import torch


def auto_device(device: tp.Optional[str] = "auto", gpu_allowed: bool = True) -> str:
    """`device` as given, or for None / `auto`: `cuda` when a GPU is visible and `gpu_allowed` (False for
    formats that run on CPU only, such as int8 weights), else `cpu`."""
    if device is not None and device != "auto":
        return device
    return "cuda" if gpu_allowed and torch.cuda.is_available() else "cpu"
