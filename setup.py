"""Packaging for audiocraft_ext.

AudioCraft 1.3.0's own pins cannot resolve on Python 3.11, so it is not an install requirement here: install the
pinned `requirements.txt`, then `pip install --no-deps audiocraft==1.3.0`, then this package (the Makefile does
all three).
"""
from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).parent
version = next(line.split('"')[1] for line in (ROOT / "audiocraft_ext" / "__init__.py").read_text().splitlines()
               if line.startswith("__version__"))

setup(
    name="audiocraft_ext",
    version=version,
    description="Video-to-music generation (VidMuse) built on AudioCraft",
    long_description=(ROOT / "README.md").read_text() if (ROOT / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["audiocraft_ext", "audiocraft_ext.*"]),
    include_package_data=True,
    license="MIT (code); the official VidMuse weights are CC-BY-NC 4.0",
)
