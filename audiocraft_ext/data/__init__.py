"""Training data: manifests of video-music pairs, the dataset that serves them, the CLIP feature cache."""
