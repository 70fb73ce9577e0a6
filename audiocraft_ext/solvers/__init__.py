"""Solvers: VidMuse training, dispatched next to AudioCraft's own solvers."""
import omegaconf


def get_solver(cfg: omegaconf.DictConfig):
    """The solver named by `cfg.solver`: `vidmuse` here, any other name from AudioCraft (e.g. `compression`)."""
    if cfg.solver == "vidmuse":
        from .vidmuse import VidMuseSolver
        return VidMuseSolver(cfg)
    from audiocraft.solvers.builders import get_solver as get_audiocraft_solver
    return get_audiocraft_solver(cfg)
