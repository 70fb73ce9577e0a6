"""Does the music follow the video? Rank correlations on held-out clips of the synthetic corpus.

For every clip of a corpus folder (`attributes.jsonl`, see `audiocraft_ext.synth.corpus`) it generates music with
the public `VidMuse.generate` (default sampling), measures the music's pitch register and onset rate, and reports
Spearman's rho between the driving attributes (brightness, speed) and the measured ones; the same for the
reference music (the rules' ceiling) and, with `--null_ablation`, for music generated from the null (black) video,
where the correlations should vanish. For the hue -> chord rule it scores, with the recommendation score, each
clip's own music against the same music with other chords in every scene (`chord_variants`: same register,
tempo and cuts) and reports how often the own chords score highest (chance 1/5); for the speed -> tempo rule,
the same against the clip's music at another speed (`speed_variant`: same register, chords and cuts; chance 1/2).
For a model that predicts its music's descriptors from the video (`VisualConfig.music_descriptors`), it reports
how the onset rate and register it predicts for each clip (as in generation: from the whole video) follow speed
and brightness: a miss there is the picture's reading, a miss after it the LM's; `--descriptors reference`
conditions generation on the reference music's own descriptors instead (what a perfect read-out would give: how
closely the LM follows the descriptors it is given). It also reports the codec's reconstruction of the reference
music (SI-SNR, mel distance) and the same correlations measured on it: the ceiling of any LM over that codec
(a codec that blurs the pitch caps brightness -> pitch however well the LM reads the picture). `--codec` measures a codec alone (a training
checkpoint or an export), before an LM exists.

    python -m audiocraft_ext.synth.evaluate --model_path ./model --corpus egs/synth/test --null_ablation
    python -m audiocraft_ext.synth.evaluate --codec output/vidmuse/xps/<codec sig>/checkpoint.th --corpus egs/synth/test
"""

import argparse
import json
import logging
from pathlib import Path
import sys
import typing as tp

from audiocraft.data.audio import audio_read
from audiocraft.data.audio_utils import convert_audio
from audiocraft.losses import MelSpectrogramL1Loss, SISNR
from audiocraft.models.encodec import CompressionModel
import torch
from tqdm import tqdm

from ..media.video import VideoFrames
from ..models.cli import add_model_arguments, load_codec, load_model_from_args, setup_logging
from ..models.scoring import encode_audio, score_tracks
from ..models.vidmuse import VidMuse
from ..modules.music_descriptors import music_descriptors
from ..utils.atomic import atomic_output
from .attributes import comb_share, music_attributes, spearman
from .corpus import (PROGRESSION, SAMPLE_RATE, ClipSpec, chord_variants, spec_from_row, speed_variant,
                     synthesize)

NO_DESCRIPTORS = "reference descriptors need a model built with music descriptors"


def load_attributes(corpus: Path) -> tp.List[dict]:
    with open(corpus / "attributes.jsonl") as f:
        return [json.loads(line) for line in f if line.strip()]


def correlations(rows: tp.List[dict], key: str) -> tp.Dict[str, float]:
    """rho(brightness, pitch), rho(brightness, centroid), rho(speed, onset rate) for `rows[i][key]`."""
    brightness = [r["brightness"] for r in rows]
    speed = [r["speed"] for r in rows]
    return {"brightness_pitch": spearman(brightness, [r[key]["pitch"] for r in rows]),
            "brightness_centroid": spearman(brightness, [r[key]["centroid"] for r in rows]),
            "speed_onsets": spearman(speed, [r[key]["onset_rate"] for r in rows])}


def read_references(rows: tp.List[dict], sample_rate: int, channels: int) -> tp.List[torch.Tensor]:
    """The reference music of each row `[C, N]` at `sample_rate`; sets `row["reference"]` (its attributes)."""
    references = []
    for row in rows:
        wav, sr = audio_read(row["path"])
        row["reference"] = music_attributes(wav.mean(0).numpy(), sr)
        references.append(convert_audio(wav, sr, sample_rate, channels))
    return references


@torch.no_grad()
def codec_reconstruction(codec: CompressionModel, rows: tp.List[dict], references: tp.List[torch.Tensor],
                         progress: bool = False) -> tp.Dict[str, float]:
    """Mean SI-SNR (dB, higher is better) and mel L1 distance of codec(reference) against the reference
    (`references[i]`: `[C, N]` at the codec's rate), and the mean `comb_share` at the codec's frame rate of both;
    sets `rows[i]["reconstruction"]` (its music attributes)."""
    sisnr = SISNR(sample_rate=codec.sample_rate)
    mel = MelSpectrogramL1Loss(sample_rate=codec.sample_rate)
    scores, distances, combs, reference_combs = [], [], [], []
    for row, wav in zip(tqdm(rows, desc="codec", disable=not progress), references):
        reference = wav[None].to(next(codec.parameters()).device)
        codes, scale = codec.encode(reference)
        decoded = codec.decode(codes, scale)[..., :reference.shape[-1]]
        scores.append(-float(sisnr(decoded, reference)))  # the loss is -SI-SNR
        distances.append(float(mel(decoded, reference)))
        mono = decoded[0].mean(0).cpu().numpy()
        row["reconstruction"] = music_attributes(mono, codec.sample_rate)
        combs.append(comb_share(mono, codec.sample_rate, codec.frame_rate))
        reference_combs.append(comb_share(reference[0].mean(0).cpu().numpy(), codec.sample_rate, codec.frame_rate))
    return {"si_snr_db": sum(scores) / len(scores), "mel_l1": sum(distances) / len(distances),
            "frame_comb_share": sum(combs) / len(combs),
            "reference_frame_comb_share": sum(reference_combs) / len(reference_combs)}


def evaluate_codec(codec: CompressionModel, corpus: Path, limit: tp.Optional[int] = None,
                   progress: bool = False) -> dict:
    """The codec alone: reconstruction figures and the rules' correlations on its reconstructions."""
    rows = load_attributes(corpus)[:limit]
    codec_figures = codec_reconstruction(codec, rows, read_references(rows, codec.sample_rate, codec.channels),
                                         progress)
    return {"summary": {"clips": len(rows), "reference": correlations(rows, "reference"),
                        "reconstruction": correlations(rows, "reconstruction"), "codec": codec_figures},
            "clips": rows}


def variant_scores(model: VidMuse, frames: VideoFrames, specs: tp.Sequence[ClipSpec]) -> tp.List[float]:
    """Recommendation scores, for a clip's video, of the music of each of `specs` (the clip's own first, then
    variants of it: `chord_variants`, `speed_variant`)."""
    variants = [torch.from_numpy(synthesize(spec))[None] for spec in specs]
    return score_tracks(model, frames, [encode_audio(model, wav, SAMPLE_RATE) for wav in variants])


@torch.no_grad()
def predicted_descriptors(model: VidMuse, frames: VideoFrames) -> tp.Optional[tp.List[float]]:
    """The music descriptors (unit scale: onset rate, register) the model predicts from a video, which its
    generation conditions on; None for a model built without them."""
    descriptors = model.predict_music_descriptors([frames])
    if descriptors is None:
        return None
    return model.lm.video_encoder.normalize_descriptors(descriptors)[0].tolist()


def effective_sampling(model: VidMuse) -> tp.Dict[str, tp.Any]:
    """The model's sampling parameters (`VidMuse.set_generation_params`), its own double guidance filled in where
    none was set, and its draws per video (`rerank_candidates`)."""
    params = dict(model.generation_params, rerank_candidates=model.rerank_candidates)
    if params["cfg_coef_beta"] is None:
        params["cfg_coef_beta"] = model.lm.cfg_coef_beta
    return params


def own_first(rows: tp.List[dict], key: str) -> float:
    """The share of `rows` whose own music (first of `row[key]`) scores above all its variants."""
    return sum(r[key][0] > max(r[key][1:]) for r in rows) / len(rows)


def evaluate(model: VidMuse, corpus: Path, seed: int = 0, null_ablation: bool = False,
             limit: tp.Optional[int] = None, progress: bool = False, reference_descriptors: bool = False) -> dict:
    """Generate for each clip and measure; returns per-clip rows and the summary correlations. With
    `reference_descriptors` (models built with music descriptors), generation is conditioned on the reference
    music's descriptors instead of the predicted ones (the null video keeps its own)."""
    if reference_descriptors and not model.lm.visual_config.music_descriptors:
        raise ValueError(NO_DESCRIPTORS)
    rows = load_attributes(corpus)[:limit]
    references = read_references(rows, model.sample_rate, model.audio_channels)
    for index, (row, reference) in enumerate(zip(tqdm(rows, desc="clips", disable=not progress), references)):
        frames = model.load_video(row["video_path"])
        given = music_descriptors(reference[None], model.sample_rate) if reference_descriptors else None
        # one sample per clip, as a user would get it (unless given the reference's descriptors)
        generated = model.generate([frames], seed=seed + index, music_descriptors=given)[0]
        row["generated"] = music_attributes(generated[0].numpy(), model.sample_rate)
        spec = spec_from_row(row)
        scores = variant_scores(model, frames, [*chord_variants(spec), speed_variant(spec)])  # own music first
        row["chord_scores"], row["speed_scores"] = scores[:-1], [scores[0], scores[-1]]
        row["predicted_descriptors"] = predicted_descriptors(model, frames)
        if null_ablation:  # the same seeds without the picture (reranked by the null video's own descriptors)
            null = VideoFrames(torch.zeros_like(frames.local_frames), torch.zeros_like(frames.global_frames),
                               frames.duration, frames.local_fps)
            null_music = model.generate([null], seed=seed + index)[0]
            row["null"] = music_attributes(null_music[0].numpy(), model.sample_rate)
    codec_figures = codec_reconstruction(model.compression_model, rows, references)
    summary = {"clips": len(rows), "reference": correlations(rows, "reference"),
               "reconstruction": correlations(rows, "reconstruction"),
               "generated": correlations(rows, "generated"),
               "hue_chord": {"own_chords_first": own_first(rows, "chord_scores"), "chance": 1 / len(PROGRESSION)},
               "speed_tempo": {"own_tempo_first": own_first(rows, "speed_scores"), "chance": 0.5},
               "codec": codec_figures, "sampling": effective_sampling(model),
               "descriptors": "reference" if reference_descriptors else "predicted"}
    if null_ablation:
        summary["null_video"] = correlations(rows, "null")
    if all(r["predicted_descriptors"] is not None for r in rows):
        summary["predicted_descriptors"] = {
            "speed_onset_rate": spearman([r["speed"] for r in rows], [r["predicted_descriptors"][0] for r in rows]),
            "brightness_register": spearman([r["brightness"] for r in rows],
                                            [r["predicted_descriptors"][1] for r in rows])}
    return {"summary": summary, "clips": rows}


def format_summary(summary: dict) -> str:
    lines = [f"{summary['clips']} clips; Spearman rho      brightness->pitch  brightness->centroid  speed->onsets"]
    for key in ("reference", "reconstruction", "generated", "null_video"):
        if key in summary:
            c = summary[key]
            lines.append(f"  {key:<28}{c['brightness_pitch']:>10.2f}{c['brightness_centroid']:>20.2f}"
                         f"{c['speed_onsets']:>15.2f}")
    if "hue_chord" in summary:
        chords = summary["hue_chord"]
        lines.append(f"hue -> chord: own chords score highest for {chords['own_chords_first']:.2f} of the clips "
                     f"(against the same music with other chords; chance {chords['chance']:.2f})")
    if "speed_tempo" in summary:
        tempo = summary["speed_tempo"]
        lines.append(f"speed -> tempo: own tempo scores higher for {tempo['own_tempo_first']:.2f} of the clips "
                     f"(against the same music at another speed, `speed_variant`; chance {tempo['chance']:.2f})")
    if "predicted_descriptors" in summary:
        predicted = summary["predicted_descriptors"]
        lines.append(f"descriptors predicted from the whole video: speed -> onset rate "
                     f"{predicted['speed_onset_rate']:.2f}, brightness -> register "
                     f"{predicted['brightness_register']:.2f}")
    draws = summary.get("sampling", {}).get("rerank_candidates", 1)
    if draws > 1:
        lines.append(f"generated: the nearest of {draws} draws per clip to the descriptors it was conditioned on")
    if summary.get("descriptors") == "reference":
        lines.append("generated: conditioned on the reference music's descriptors, not the predicted ones")
    codec = summary["codec"]
    lines.append(f"codec reconstruction: SI-SNR {codec['si_snr_db']:.2f} dB, mel L1 {codec['mel_l1']:.3f}, power on "
                 f"the frame-rate comb {codec['frame_comb_share']:.2f} (reference music "
                 f"{codec['reference_frame_comb_share']:.2f})")
    return "\n".join(lines)


def main(argv: tp.Optional[tp.Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(parser)
    parser.add_argument("--corpus", type=Path, required=True, help="held-out corpus folder")
    parser.add_argument("--codec", type=Path, default=None,
                        help="measure this codec alone (a codec training checkpoint.th, a checkpoint folder or a "
                             "compression_state_dict.bin) instead of the model of --model_path: no generation, so "
                             "--seed and --null_ablation do not apply")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--null_ablation", action="store_true", help="also generate from the null (black) video")
    parser.add_argument("--cfg_coef", type=float, default=None,
                        help="classifier-free guidance coefficient (default: the model's default sampling)")
    parser.add_argument("--cfg_coef_beta", type=float, default=None,
                        help="double guidance (VidMuse.set_generation_params; default: the model's own)")
    parser.add_argument("--rerank_candidates", type=int, default=None,
                        help="draws per clip, the one nearest the descriptors it was conditioned on kept (predicted, "
                             "or with --descriptors reference the reference's; default: the model's own)")
    parser.add_argument("--descriptors", choices=("predicted", "reference"), default="predicted",
                        help="condition generation on the descriptors predicted from each video (as a user gets) "
                             "or on the reference music's own (how closely the LM follows them)")
    parser.add_argument("--limit", type=int, default=None, help="evaluate the first N clips only")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args(argv)
    setup_logging(logging.WARNING)
    if args.codec is not None:
        results = evaluate_codec(load_codec(args.codec, args.device), args.corpus, args.limit, progress=True)
    else:
        model = load_model_from_args(args).model
        overrides = {name: value for name, value in (("cfg_coef", args.cfg_coef),
                                                     ("cfg_coef_beta", args.cfg_coef_beta),
                                                     ("rerank_candidates", args.rerank_candidates))
                     if value is not None}
        if overrides:  # the other parameters keep the model's default sampling
            try:
                model.set_generation_params(**overrides)
            except ValueError as error:
                parser.error(str(error))
        reference = args.descriptors == "reference"
        if reference and not model.lm.visual_config.music_descriptors:
            parser.error(NO_DESCRIPTORS)
        results = evaluate(model, args.corpus, args.seed, args.null_ablation, args.limit, progress=True,
                           reference_descriptors=reference)
    print(format_summary(results["summary"]))
    if args.json:
        with atomic_output(args.json) as tmp:
            tmp.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
