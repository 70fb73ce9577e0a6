"""Solvers: VidMuse training, and AudioCraft's compression solver for the codec, with safe checkpoints."""
import omegaconf


def get_solver(cfg: omegaconf.DictConfig):
    """The solver named by `cfg.solver`: `vidmuse`, or `compression` (AudioCraft's EnCodec solver)."""
    if cfg.solver == "vidmuse":
        from .vidmuse import VidMuseSolver
        return VidMuseSolver(cfg)
    if cfg.solver == "compression":
        from .codec import CodecSolver
        return CodecSolver(cfg)
    raise ValueError(f"unknown solver {cfg.solver!r}: vidmuse or compression")
