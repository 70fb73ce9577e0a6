"""Packaging for audiocraft_ext.

AudioCraft 1.3.0's own pins cannot resolve on Python 3.11 (torch==2.1.0, av==11.0.0, xformers<0.0.23), so it is
not an install requirement here: install the pinned `requirements.txt`, then `pip install --no-deps
audiocraft==1.3.0`, then this package (the Makefile does all three, this package with `--no-deps` too).
"""
from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).parent
version = next(line.split('"')[1] for line in (ROOT / "audiocraft_ext" / "__init__.py").read_text().splitlines()
               if line.startswith("__version__"))

# What the package imports at run time, AudioCraft aside (see above). AudioCraft is installed without its
# dependencies and its top-level import needs dora-search, flashy, hydra-core, julius, num2words, sentencepiece,
# spacy, librosa, torchmetrics and xformers even to generate: they are run-time requirements here too.
INSTALL_REQUIRES = [
    "torch>=2.6",  # checkpoints load with weights_only=True and mmap
    "torchaudio",
    "xformers",
    "av",
    "numpy",
    "scipy",
    "einops",
    "omegaconf>=2.3",
    "hydra-core>=1.3",
    "dora-search",
    "flashy",
    "transformers",
    "huggingface_hub",
    "julius",
    "num2words",
    "sentencepiece",
    "spacy",
    "librosa",
    "scenedetect-headless",  # media/cuts.py
    "pedalboard",  # media/beat_sync.py (Rubber Band)
    "torchmetrics",
    "soundfile",
    "tqdm",
]
DEMO_REQUIRES = ["gradio>=5"]  # demos/VidMuse_app.py
TRAIN_REQUIRES = ["dora-search", "flashy", "hydra-core>=1.3"]  # AudioCraft's training stack: train.sh, solvers/
EXTRAS_REQUIRE = {
    "demo": DEMO_REQUIRES,
    "train": TRAIN_REQUIRES,
    "vocals": ["demucs"],  # build_manifest --remove_vocals
    "corpus": ["pyfluidsynth"],  # synth/corpus.py's music (with Debian's fluidsynth: make corpus-deps)
    "test": ["pytest>=8", "playwright", "gradio_client", "pyfluidsynth", *DEMO_REQUIRES, *TRAIN_REQUIRES],
}

setup(
    name="audiocraft_ext",
    version=version,
    description="Video-to-music generation (VidMuse) built on AudioCraft",
    long_description=(ROOT / "README.md").read_text() if (ROOT / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["audiocraft_ext", "audiocraft_ext.*"]),
    include_package_data=True,
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS_REQUIRE,
    license="MIT (code); the official VidMuse weights are CC-BY-NC 4.0",
    license_files=["LICENSE", "NOTICE"],
)
