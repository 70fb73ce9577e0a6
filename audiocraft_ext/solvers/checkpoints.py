"""Training checkpoints that load with `torch.load(weights_only=True)`.

torch >= 2.6 loads with `weights_only=True` by default (AudioCraft's `load_checkpoint` relies on that default),
and rightly so: a checkpoint must never run code. AudioCraft's solvers save their config as a `DictConfig` and
their EMA state as a `defaultdict`, which such a load refuses. The mixin saves both as plain containers.
"""

import omegaconf


class SafeCheckpointMixin:
    """Put before an AudioCraft solver class: its `state_dict` holds only plain containers and tensors."""

    def state_dict(self) -> dict:
        state = super().state_dict()  # type: ignore[misc]
        state["xp.cfg"] = omegaconf.OmegaConf.to_container(state["xp.cfg"], resolve=False)  # write-only entry
        if state.get("ema") is not None:
            state["ema"] = {**state["ema"], "state": dict(state["ema"]["state"])}
        return state
