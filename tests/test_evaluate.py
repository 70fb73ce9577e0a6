"""The evaluation CLI: retrieval metrics, paired folders, and clear errors when metric weights are missing."""

import json

import numpy as np
import pytest
import soundfile
import torch

from audiocraft_ext.evaluate import main, retrieval_metrics
from audiocraft_ext.synth.corpus import write_corpus


def test_retrieval_metrics_on_a_known_matrix():
    scores = torch.tensor([[0.9, 0.1, 0.0],    # own track first
                           [0.5, 0.2, 0.1],    # own track second
                           [0.3, 0.4, 0.1]])   # own track third
    metrics = retrieval_metrics(scores)
    assert metrics["R@1"] == pytest.approx(1 / 3) and metrics["R@5"] == 1.0
    assert metrics["MRR"] == pytest.approx((1 + 1 / 2 + 1 / 3) / 3)
    constant = retrieval_metrics(torch.zeros(4, 4))  # an uninformative score is not a perfect one
    assert constant["R@1"] == 0.0 and constant["MRR"] == pytest.approx(0.25)
    assert retrieval_metrics(torch.tensor([[float("nan"), 0.0], [0.0, 1.0]]))["R@1"] == 0.5


@pytest.fixture()
def folders(tmp_path):
    generated, reference = tmp_path / "gen", tmp_path / "ref"
    generated.mkdir()
    reference.mkdir()
    for name in ("a", "b"):
        soundfile.write(str(generated / f"{name}.wav"), np.zeros(32000), 32000)
        soundfile.write(str(reference / f"{name}.wav"), np.zeros(32000), 32000)
    return generated, reference


def test_missing_metric_weights_are_named(folders, tmp_path, capsys):
    generated, reference = folders
    common = ["--generated", str(generated), "--reference", str(reference), "--out", str(tmp_path / "r.json")]
    assert main(common + ["--fad_vggish", str(tmp_path / "vggish_model.ckpt")]) == 2
    assert "VGGish checkpoint" in capsys.readouterr().err
    assert main(common + ["--kld"]) == 2
    assert "hear21passt" in capsys.readouterr().err
    assert main(common + ["--clap_checkpoint", str(tmp_path / "clap.pt")]) == 2
    assert "CLAP checkpoint" in capsys.readouterr().err


def test_retrieval_and_synthetic_correlations_end_to_end(tiny_checkpoint, tmp_path, capsys):
    write_corpus(tmp_path / "corpus", count=3, seed=500, duration=2.0, progress=False)
    out = tmp_path / "results.json"
    assert main(["--model_path", str(tiny_checkpoint), "--manifest", str(tmp_path / "corpus"), "--retrieval",
                 "--window", "2", "--synthetic", str(tmp_path / "corpus"), "--out", str(out)]) == 0
    results = json.loads(out.read_text())
    assert results["retrieval"]["pairs"] == 3 and 0 <= results["retrieval"]["R@1"] <= 1
    assert results["retrieval"]["R@5"] == 1.0  # three candidates: always in the top 5
    assert set(results["synthetic"]["reference"]) == {"brightness_pitch", "brightness_centroid", "speed_onsets"}
    assert -1 <= results["synthetic"]["reference"]["brightness_pitch"] <= 1
    assert "retrieval:" in capsys.readouterr().out
