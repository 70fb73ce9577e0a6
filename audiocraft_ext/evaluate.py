"""Evaluation CLI: reference-based audio metrics, video-music retrieval, synthetic-corpus correlations.

    # music generated for a set of videos (e.g. by infer.sh) against the reference music, paired by file stem
    python -m audiocraft_ext.evaluate --generated result/ --reference refs/ --kld --fad_vggish vggish_model.ckpt
    # retrieval: does the model's score pick each video's own music among all of a manifest's tracks?
    python -m audiocraft_ext.evaluate --model_path ./model --manifest egs/synth/test --retrieval
    # rank correlations on the synthetic corpus (brightness -> pitch, speed -> onsets)
    python -m audiocraft_ext.evaluate --model_path ./model --synthetic egs/synth/test
    # rhythm: do the music's beats fall on its video's scene cuts? (videos named by infer.sh's sidecars, or
    # --videos DIR, paired by file stem)
    python -m audiocraft_ext.evaluate --generated result/ --rhythm
    # descriptors: does the music have the onset rate and register it was asked for (infer.sh's sidecars)?
    python -m audiocraft_ext.evaluate --generated result/ --descriptors

FAD (VGGish), KL (PaSST) and CLAP are AudioCraft's metrics; they need weights this project does not ship: a
clear error names what is missing. Retrieval and the synthetic correlations need only the model; the rhythm
figures need no model (PySceneDetect's cuts, librosa's beats and onsets: see `media/rhythm.py`), nor do the
descriptor figures (`modules/music_descriptors.py`). Results are printed as a table and written as JSON
(`--out`).
"""

import argparse
import json
import logging
from pathlib import Path
import sys
import tempfile
import typing as tp

from audiocraft.data.audio import audio_read
from audiocraft.data.audio_utils import convert_audio
import librosa
import torch
from tqdm import tqdm

from .data.video_dataset import load_video_audio_meta
from .media.cuts import detect_cuts
from .media.extensions import AUDIO_EXTENSIONS, VIDEO_EXTENSIONS, find_media
from .media.rhythm import CutAlignment, align, track_rhythm
from .media.video import VideoReadError
from .models.cli import add_codebooks_argument, add_model_arguments, load_model_from_args, setup_logging
from .models.scoring import TOKEN_CACHE_FOLDER, TrackTokenCache, score_tracks
from .models.vidmuse import VidMuse
from .modules.music_descriptors import REGISTER_BAND, music_descriptors, readable_descriptors
from .synth.attributes import spearman
from .synth.evaluate import evaluate as evaluate_synthetic

logger = logging.getLogger("audiocraft_ext.evaluate")
SAMPLE_RATE = 32000  # the rate the metrics read audio at


class MissingMetricWeights(RuntimeError):
    """A metric's package or weights are not available; the message says which and where to get them."""


def retrieval_metrics(scores: torch.Tensor) -> tp.Dict[str, float]:
    """R@1, R@5 and mean reciprocal rank from a score matrix `[N videos, N tracks]` whose diagonal holds each
    video's own track (higher score = better match). Ties count against the video (an uninformative, constant
    score gets rank N, not 1), and NaN scores rank last."""
    scores = scores.nan_to_num(nan=float("-inf"))
    own = scores.diagonal()[:, None]
    ranks = (scores >= own).sum(dim=1).float()  # the own track included: ties rank it last among them
    return {"R@1": float((ranks <= 1).float().mean()), "R@5": float((ranks <= 5).float().mean()),
            "MRR": float((1 / ranks).mean()), "pairs": int(scores.shape[0]), "chance_R@1": 1 / scores.shape[0]}


def retrieval(model: VidMuse, manifest: Path, window: float = 10.0, batch_size: int = 8, progress: bool = False,
              codebooks: tp.Optional[int] = 1) -> tp.Dict[str, float]:
    """Score every (video, track) pair of a manifest with the recommendation score (on the first `codebooks`
    codebooks; None: all); retrieval metrics."""
    metas = load_video_audio_meta(manifest)
    folder = Path(manifest) if Path(manifest).is_dir() else Path(manifest).parent
    cache = TrackTokenCache(model, folder / TOKEN_CACHE_FOLDER)
    tokens = [cache.tokens(Path(m.path)) for m in metas]
    rows = [score_tracks(model, model.load_video(m.video_path), tokens, window, batch_size, codebooks)
            for m in tqdm(metas, desc="videos", disable=not progress)]
    return retrieval_metrics(torch.tensor(rows))


def paired_audio(generated: Path, reference: Path) -> tp.List[tp.Tuple[Path, Path]]:
    """Generated and reference files with the same stem."""
    refs = {p.stem: p for p in find_media(reference, AUDIO_EXTENSIONS)}
    pairs = [(p, refs[p.stem]) for p in find_media(generated, AUDIO_EXTENSIONS) if p.stem in refs]
    if not pairs:
        raise ValueError(f"no audio files with matching names in {generated} and {reference}")
    return pairs


def sidecar_of(track: Path) -> tp.Dict[str, tp.Any]:
    """The infer.sh sidecar of a generated track (`<stem>.json` beside it), or {} when there is none."""
    sidecar = track.with_suffix(".json")
    return json.loads(sidecar.read_text()) if sidecar.is_file() else {}


def music_videos(generated: Path, videos: tp.Optional[Path]) -> tp.List[tp.Tuple[Path, Path]]:
    """Each generated track with its video: the video of the same stem in `videos`, or else the `input` its
    sidecar (`<stem>.json`, written by infer.sh) names. Tracks without a video are skipped with a warning."""
    by_stem = {p.stem: p for p in find_media(videos, VIDEO_EXTENSIONS)} if videos is not None else {}
    pairs = []
    for track in find_media(generated, AUDIO_EXTENSIONS):
        video = by_stem.get(track.stem)
        if video is None and videos is None:
            named = sidecar_of(track).get("input")
            video = Path(named) if named and Path(named).is_file() else None
        if video is None:
            logger.warning("%s: no video found for it (in --videos, or named by its sidecar)", track)
            continue
        pairs.append((track, video))
    if not pairs:
        raise ValueError(f"no music in {generated} with a video to go with it (pass --videos, or keep infer.sh's "
                         "sidecars)")
    return pairs


def rhythm_metrics(pairs: tp.Sequence[tp.Tuple[Path, Path]], progress: bool = False) -> tp.Dict[str, tp.Any]:
    """How the music's beats line up with its video's scene cuts, all cuts pooled: beat and onset hit rates
    at 50/70/100 ms, beat IoU, counts; `per_video`: each track's beat hit rate at 70 ms."""
    total, per_video, failed = CutAlignment(), {}, 0
    for track, video in tqdm(pairs, desc="rhythm", disable=not progress):
        try:
            wav = _load(track)
            cuts = detect_cuts(video, wav.shape[-1] / SAMPLE_RATE)
        except VideoReadError as err:
            logger.warning("%s", err)
            failed += 1
            continue
        except (RuntimeError, OSError) as err:  # an unreadable audio file (soundfile / PyAV)
            logger.warning("%s: cannot read the audio (%s)", track, err)
            failed += 1
            continue
        alignment = align(cuts, track_rhythm(wav, SAMPLE_RATE))
        per_video[track.stem] = alignment.hit_rate(0.07)
        total = total + alignment
    return {**total.summary(), "tracks": len(per_video), "failed": failed, "per_video": per_video}


def descriptor_metrics(generated: Path, progress: bool = False) -> tp.Dict[str, tp.Any]:
    """How closely music follows the descriptors it was asked for (the `music_descriptors` of each track's
    infer.sh sidecar, read from the picture or set by hand), measured on its audio: for the onset rate (per
    second) and the register (as a MIDI pitch, 12 per octave), the mean asked and measured values, the mean
    error (measured - asked) and mean absolute error, and the rank correlation of measured with asked (None when
    every track was asked the same). Tracks without such a sidecar are skipped; silent ones (no register to
    measure) are counted apart."""
    asked, measured, silent = [], [], 0
    for track in tqdm(find_media(generated, AUDIO_EXTENSIONS), desc="descriptors", disable=not progress):
        wanted = sidecar_of(track).get("music_descriptors")
        if not wanted:
            continue
        found = readable_descriptors(music_descriptors(_load(track)[None], SAMPLE_RATE)[0])
        if found["register_hz"] < REGISTER_BAND[0]:  # no power in the band: `register` gives 0 (1 Hz)
            logger.warning("%s: silent, left out", track)
            silent += 1
            continue
        asked.append(wanted)
        measured.append(found)
    if not asked:
        raise ValueError(f"no music in {generated} whose sidecar records the music descriptors it was asked for "
                         "(infer.sh with a model built with them writes them)")
    results: tp.Dict[str, tp.Any] = {"tracks": len(asked), "silent": silent}
    for name, a, m in (
            ("onset_rate", [item["onset_rate"] for item in asked], [item["onset_rate"] for item in measured]),
            ("register_midi", [float(librosa.hz_to_midi(item["register_hz"])) for item in asked],
             [float(librosa.hz_to_midi(item["register_hz"])) for item in measured])):
        errors = [y - x for x, y in zip(a, m)]
        results[name] = {"asked": sum(a) / len(a), "measured": sum(m) / len(m),
                         "error": sum(errors) / len(errors), "abs_error": sum(map(abs, errors)) / len(errors),
                         "spearman": spearman(a, m) if len(set(a)) > 1 else None}
    return results


def _load(path: Path, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    wav, sr = audio_read(path)
    return convert_audio(wav, sr, sample_rate, 1)


def kld_metric(pairs: tp.Sequence[tp.Tuple[Path, Path]], pretrained_length: float = 10.0) -> tp.Dict[str, float]:
    """KL divergence of PaSST label distributions (AudioCraft's `PasstKLDivergenceMetric`)."""
    from audiocraft.metrics.kld import PasstKLDivergenceMetric
    try:
        metric = PasstKLDivergenceMetric(pretrained_length=pretrained_length)
    except ModuleNotFoundError:
        raise MissingMetricWeights("KL needs the PaSST classifier: pip install hear21passt (its AudioSet weights "
                                   "are downloaded on first use)") from None
    for gen, ref in pairs:
        g, r = _load(gen), _load(ref)
        n = min(g.shape[-1], r.shape[-1])
        metric.update(g[None, :, :n], r[None, :, :n], torch.tensor([n]), torch.tensor([32000]))
    return {k: float(v) for k, v in metric.compute().items()}


def fad_metric(pairs: tp.Sequence[tp.Tuple[Path, Path]], vggish: tp.Optional[Path], tf_bin: tp.Optional[Path],
               workdir: Path) -> float:
    """Frechet Audio Distance with VGGish (AudioCraft's `FrechetAudioDistanceMetric`, run in a TF environment)."""
    if vggish is None or not Path(vggish).is_file() or tf_bin is None:
        raise MissingMetricWeights(
            "FAD needs the VGGish checkpoint (vggish_model.ckpt, from the google-research frechet_audio_distance "
            "release) passed as --fad_vggish, and that code's folder as --fad_bin, with TensorFlow installed "
            f"(got --fad_vggish {vggish}, --fad_bin {tf_bin})")
    from audiocraft.metrics.fad import FrechetAudioDistanceMetric
    metric = FrechetAudioDistanceMetric(bin=tf_bin, model_path=vggish, log_folder=workdir)
    for gen, ref in pairs:
        g, r = _load(gen), _load(ref)
        n = min(g.shape[-1], r.shape[-1])
        metric.update(g[None, :, :n], r[None, :, :n], torch.tensor([n]), torch.tensor([32000]), [gen.stem])
    return float(metric.compute())


def clap_metric(pairs: tp.Sequence[tp.Tuple[Path, Path]], checkpoint: tp.Optional[Path]) -> float:
    """CLAP text consistency of generated music with the `description` of each reference's sidecar json."""
    try:
        from audiocraft.metrics.clap_consistency import CLAPTextConsistencyMetric
        if checkpoint is None or not Path(checkpoint).is_file():
            raise FileNotFoundError(checkpoint)
        metric = CLAPTextConsistencyMetric(checkpoint, model_arch="HTSAT-base")
    except (ImportError, FileNotFoundError, OSError):
        raise MissingMetricWeights(
            "CLAP needs `pip install laion_clap`, the CLAP checkpoint (music_audioset_epoch_15_esc_90.14.pt, LAION "
            f"CLAP release) passed as --clap_checkpoint (got {checkpoint}) and the roberta-base tokenizer") from None
    for gen, ref in pairs:
        sidecar = ref.with_suffix(".json")
        text = json.loads(sidecar.read_text()).get("description") if sidecar.exists() else None
        if not text:
            raise ValueError(f"CLAP needs a description for {ref} (in {sidecar})")
        g = _load(gen)
        metric.update(g[None], [text], torch.tensor([g.shape[-1]]), torch.tensor([32000]))
    return float(metric.compute())


def format_table(results: dict) -> str:
    lines = []
    for section, values in results.items():
        if isinstance(values, dict):
            lines.append(f"{section}:")
            lines += [f"  {k:<24} {v:.4f}" if isinstance(v, float) else f"  {k:<24} {v}" for k, v in values.items()
                      if not isinstance(v, (dict, list))]
            lines += [f"  {k}: " + ", ".join(f"{kk} {vv:.3f}" if isinstance(vv, float) else f"{kk} {vv}"
                                             for kk, vv in v.items())
                      for k, v in values.items() if isinstance(v, dict)]
        else:
            lines.append(f"{section:<26} {values:.4f}")
    return "\n".join(lines)


def main(argv: tp.Optional[tp.Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m audiocraft_ext.evaluate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--generated", type=Path, help="folder of generated music")
    parser.add_argument("--reference", type=Path, help="folder of reference music (same file stems)")
    parser.add_argument("--kld", action="store_true", help="KL divergence (PaSST)")
    parser.add_argument("--fad_vggish", type=Path, default=None, help="VGGish checkpoint for FAD")
    parser.add_argument("--fad_bin", type=Path, default=None, help="frechet_audio_distance code folder for FAD")
    parser.add_argument("--clap_checkpoint", type=Path, default=None, help="CLAP checkpoint for text consistency")
    add_model_arguments(parser)
    parser.add_argument("--manifest", type=Path, help="paired videos/music (data.jsonl folder) for --retrieval")
    parser.add_argument("--retrieval", action="store_true", help="video -> music retrieval R@1, R@5, MRR")
    parser.add_argument("--window", type=float, default=10.0, help="seconds scored per pair (retrieval)")
    add_codebooks_argument(parser)
    parser.add_argument("--synthetic", type=Path, help="synthetic corpus folder: attribute correlations")
    parser.add_argument("--rhythm", action="store_true", help="beats and onsets of --generated against the scene "
                        "cuts of their videos: cut hit rates at 50/70/100 ms, beat IoU")
    parser.add_argument("--descriptors", action="store_true", help="onset rate and register of --generated "
                        "against those its infer.sh sidecars say it was asked for (models with music descriptors)")
    parser.add_argument("--videos", type=Path, default=None, help="videos of --generated for --rhythm, paired by "
                        "stem (default: the input named in each track's infer.sh sidecar)")
    parser.add_argument("--out", type=Path, default=Path("evaluation.json"), help="JSON results")
    args = parser.parse_args(argv)
    setup_logging(logging.WARNING)
    results: dict = {}
    try:
        if args.rhythm:
            if not args.generated:
                parser.error("--rhythm needs --generated")
            results["rhythm"] = rhythm_metrics(music_videos(args.generated, args.videos), progress=True)
        if args.descriptors:
            if not args.generated:
                parser.error("--descriptors needs --generated")
            results["descriptors"] = descriptor_metrics(args.generated, progress=True)
        if args.reference or (args.generated and not (args.rhythm or args.descriptors)):
            if not (args.generated and args.reference):
                parser.error("--generated and --reference go together")
            pairs = paired_audio(args.generated, args.reference)
            results["pairs"] = float(len(pairs))
            if args.kld:
                results["kld"] = kld_metric(pairs)
            if args.fad_vggish or args.fad_bin:
                with tempfile.TemporaryDirectory() as workdir:  # AudioCraft's FAD reads every wav it finds there
                    results["fad"] = fad_metric(pairs, args.fad_vggish, args.fad_bin, Path(workdir))
            if args.clap_checkpoint:
                results["clap"] = clap_metric(pairs, args.clap_checkpoint)
        if args.retrieval or args.synthetic:
            if args.retrieval and args.manifest is None:
                parser.error("--retrieval needs --manifest")
            model = load_model_from_args(args).model
            if args.retrieval:
                results["retrieval"] = retrieval(model, args.manifest, args.window, progress=True,
                                                 codebooks=args.codebooks)
            if args.synthetic:
                results["synthetic"] = evaluate_synthetic(model, args.synthetic, null_ablation=True,
                                                         progress=True)["summary"]
    except (MissingMetricWeights, ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if not results:
        parser.error("nothing to evaluate: see --help")
    print(format_table(results))
    args.out.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
