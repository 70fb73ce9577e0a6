"""The base of the attention classes this project swaps into AudioCraft's transformer after construction."""

from audiocraft.modules.transformer import StreamingMultiheadAttention


class SwappedAttention(StreamingMultiheadAttention):
    """An AudioCraft `StreamingMultiheadAttention` whose class was changed in place (`convert` in subclasses);
    `restore` changes it back. Subclasses name the submodule that holds their int8 projection once quantized."""
    int8_module: str = ""

    @property
    def is_int8(self) -> bool:
        return self.int8_module in self._modules

    def restore(self) -> StreamingMultiheadAttention:
        """Back to AudioCraft's `StreamingMultiheadAttention` (float weights only)."""
        if self.is_int8:
            raise RuntimeError("an int8 attention cannot go back to AudioCraft's module")
        self.__class__ = StreamingMultiheadAttention  # type: ignore[assignment]
        return self
