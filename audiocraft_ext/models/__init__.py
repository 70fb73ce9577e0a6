"""Models: the VidMuse language model, its builders and loaders, and the `VidMuse` generation wrapper."""
