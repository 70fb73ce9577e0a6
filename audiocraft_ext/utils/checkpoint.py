"""Checkpoint packages (a loaded `state_dict.bin`, `compression_state_dict.bin` or `checkpoint.th`): the one test
that tells a solver's training checkpoint from an exported one."""

import typing as tp


def is_training_checkpoint(pkg: tp.Mapping[str, tp.Any]) -> bool:
    """Whether `pkg` is a solver's training checkpoint (flashy's `checkpoint.th`: its best state maps each stateful
    name to its state, `{'model': state dict}`) rather than an exported one (its best state is the model's state
    dict, as in the release's files)."""
    best = pkg.get("best_state")
    return isinstance(best, tp.Mapping) and isinstance(best.get("model"), tp.Mapping)


def best_model_state(pkg: tp.Mapping[str, tp.Any]) -> tp.Mapping[str, tp.Any]:
    """The model's best state dict in a checkpoint package, training or exported."""
    best = pkg["best_state"]
    return best["model"] if is_training_checkpoint(pkg) else best
