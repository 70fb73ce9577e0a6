"""Models: the VidMuse language model and `VidMuse` wrapper, their builders, loaders and export, the likelihood
score, and loading a model from the command line."""
