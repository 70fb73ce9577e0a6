"""Demos: the Gradio web app (python -m demos.VidMuse_app)."""
