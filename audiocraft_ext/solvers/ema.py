"""AudioCraft's EMA, with parts of the model kept exact."""

import typing as tp

from audiocraft.optim import ModuleDictEMA
from torch import nn


class FrozenPartsEMA(ModuleDictEMA):
    """`ModuleDictEMA` whose averages of the tensors under the `frozen` key prefixes stay exact copies of them:
    its update (`s * (1 - w) + v * w`) is not bit-exact on unchanged weights, and the best state is saved from the
    averages."""

    def __init__(self, module_dict: nn.ModuleDict, frozen: tp.Tuple[str, ...], **kwargs):
        self.frozen = frozen
        super().__init__(module_dict, **kwargs)

    def step(self):
        super().step()
        self.copy_frozen()

    def copy_frozen(self):
        """Copy the tensors under the `frozen` prefixes into the averages (e.g. after they were set anew)."""
        for module_name, module in self.module_dict.items():
            for key, value in module.state_dict().items():
                if key.startswith(self.frozen) and key in self.state[module_name]:
                    self.state[module_name][key].copy_(value)


def keep_parts_exact(ema: tp.Optional[ModuleDictEMA], frozen: tp.Tuple[str, ...]) -> tp.Optional[FrozenPartsEMA]:
    """The solver's EMA (None when off) rebuilt as a `FrozenPartsEMA` over the same modules and settings."""
    if ema is None:
        return None
    return FrozenPartsEMA(ema.module_dict, frozen, decay=ema.decay, unbias=ema.unbias, device=ema.device)
