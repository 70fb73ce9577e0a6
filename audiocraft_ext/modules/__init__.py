"""Neural network building blocks: the visual encoder, the long-short-term fusion, cached cross-attention."""
