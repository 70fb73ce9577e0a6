"""Image + text -> music: the optional T5 text conditioner next to the video (a tiny T5 built from a config)."""

import json
import os
from pathlib import Path
import subprocess
import sys

import pytest
import torch

from audiocraft_ext.infer import main as infer_main
from audiocraft_ext.models.builders import load_lm_config
from audiocraft_ext.models.export import COMPRESSION_FILENAME, LM_FILENAME, export_compression_model, export_lm_model
from audiocraft_ext.models.vidmuse import VidMuse
from audiocraft_ext.synth.corpus import write_corpus
from audiocraft_ext.synth.scenes import Scene, Shape, write_image

from conftest import build_tiny_lm, tiny_codec_cfg

ROOT = Path(__file__).resolve().parents[1]
TINY_T5 = ["text_conditioner.use=true", "+text_conditioner.t5_config={d_model:16,num_layers:1,num_heads:2,"
           "d_kv:8,d_ff:32}"]


@pytest.fixture(scope="module")
def text_checkpoint(tmp_path_factory, tiny_codec) -> Path:
    cfg = load_lm_config(["model/lm/model_scale=tiny", *TINY_T5])
    lm = build_tiny_lm(cfg)
    folder = tmp_path_factory.mktemp("text_model")
    export_lm_model(lm, cfg, folder / LM_FILENAME)
    export_compression_model(tiny_codec, tiny_codec_cfg(), folder / COMPRESSION_FILENAME)
    return folder


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> Path:
    return write_image(tmp_path_factory.mktemp("img") / "photo.png", Scene(1.0, shapes=[Shape()]), (96, 64))


def test_text_steers_the_music_and_survives_export(text_checkpoint, image):
    model = VidMuse.get_pretrained(text_checkpoint, device="cpu")
    assert model.lm.has_text_conditioner
    frames = model.load_image(image, 1.0)
    codes = lambda texts: model.generate([frames], seed=3, return_tokens=True, descriptions=texts)[1][0]  # noqa
    calm, energetic = codes(["calm piano"]), codes(["energetic drums"])
    assert not torch.equal(calm, energetic)
    assert torch.equal(calm, codes(["calm piano"]))
    reloaded = VidMuse.get_pretrained(text_checkpoint, device="cpu")  # the config-built T5 is in the checkpoint
    assert torch.equal(reloaded.generate([frames], seed=3, return_tokens=True, descriptions=["calm piano"])[1][0],
                       calm)


def test_description_needs_a_text_model(tiny_checkpoint, text_checkpoint, image, tmp_path):
    model = VidMuse.get_pretrained(tiny_checkpoint, device="cpu")
    with pytest.raises(ValueError, match="no text conditioner"):
        model.generate([model.load_image(image, 1.0)], descriptions=["x"])
    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / "photo.png").write_bytes(image.read_bytes())
    args = ["--video_dir", str(inputs), "--image_duration", "1.5", "--description", "soft strings", "--quiet"]
    assert infer_main(["--model_path", str(tiny_checkpoint), "--output_dir", str(tmp_path / "a"), *args]) == 2
    assert infer_main(["--model_path", str(text_checkpoint), "--output_dir", str(tmp_path / "b"), *args]) == 0
    sidecar = json.loads((tmp_path / "b" / "photo.json").read_text())
    assert sidecar["parameters"]["description"] == "soft strings" and sidecar["kind"] == "image"


def test_training_with_descriptions(tmp_path):
    corpus = tmp_path / "corpus"
    write_corpus(corpus, count=3, seed=77, duration=3.0, progress=False)
    for i, wav in enumerate(sorted(corpus.glob("*.wav"))):  # AudioCraft MusicInfo sidecars with descriptions
        wav.with_suffix(".json").write_text(json.dumps({"description": ["slow", "bright", "dark"][i]}))
    data = [f"datasource.{split}={corpus}" for split in ("train", "valid", "evaluate", "generate")]
    env = dict(os.environ, AUDIOCRAFT_DORA_DIR=str(tmp_path / "dora"), PYTHON=sys.executable)
    result = subprocess.run(["bash", str(ROOT / "train.sh"), "solver=vidmuse/debug", *data, *TINY_T5,
                             "optim.epochs=1", "optim.updates_per_epoch=4", "generate.every=1"],
                            capture_output=True, text=True, env=env, cwd=ROOT)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    history = json.loads(next((tmp_path / "dora").glob("xps/*/history.json")).read_text())
    assert torch.isfinite(torch.tensor(history[0]["train"]["ce"]))
