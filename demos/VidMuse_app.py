"""Gradio demo: music for an uploaded video or image.

    python -m demos.VidMuse_app [--model_path ./model] [--device D] [--dtype T] [--listen] [--server_port N]
                                [--share] [--username U --password P] [--inbrowser]

The model is loaded once and shared; its streaming state lives on its modules, so one generation runs at a time
(the queue holds the others). Generation is the same code as `infer.sh` (`audiocraft_ext.pipeline`); a progress
bar follows the decoding steps. Interrupt stops the generation of the browser session that pressed it (between
two decoding steps) and takes its waiting requests out of the queue; other visitors' generations go on.
"""

import argparse
from dataclasses import replace
import logging
from pathlib import Path
import shutil
import sys
import tempfile
import threading
import time
import typing as tp

import gradio as gr

from audiocraft_ext.media.beat_sync import DEFAULT_MAX_TEMPO_CHANGE
from audiocraft_ext.media.extensions import is_image
from audiocraft_ext.media.video import VideoReadError, probe_video
from audiocraft_ext.models.cli import add_model_arguments, load_model_from_args, setup_logging
from audiocraft_ext.models.vidmuse import VidMuse, draw_seed
from audiocraft_ext.modules.music_descriptors import readable_descriptors
from audiocraft_ext.pipeline import (GenerationSettings, OutputPaths, PreparedInput, generate_music, output_paths,
                                     prepare_input, write_outputs)

logger = logging.getLogger("demos.VidMuse_app")
ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "dataset" / "example" / "infer"
MAX_TEMP_AGE = 3600.0  # seconds an output folder is kept for the browser to fetch


class GenerationInterrupted(Exception):
    """Raised from the progress callback when Interrupt was pressed."""


def session_of(request: tp.Optional[gr.Request]) -> tp.Optional[str]:
    """The browser session of a request (None for a direct call, as in tests)."""
    return request.session_hash if request is not None else None


def cut_sync_status(report: tp.Dict[str, tp.Any]) -> str:
    """One sentence on what moving the beats onto the cuts did (from the sidecar's `cut_sync`)."""
    cuts = len(report["cuts"])
    if report["status"] == "synced":
        return (f"Beats on {report['hits_after']} of {cuts} cuts (were {report['hits_before']}), tempo changed by "
                f"at most {100 * report['largest_tempo_change']:.0f} %.")
    reason = {"no_cuts": "the video has no cut", "no_beats": "the music has no clear beat"}.get(
        report["status"], "no beat is close enough to a cut")
    return f"Music left as generated: {reason}."


def descriptors_status(descriptors: tp.Dict[str, float], settings: GenerationSettings) -> str:
    """One sentence on the onset rate and register the music was asked for (the sidecar's `music_descriptors`),
    and which came from the picture."""
    def source(given: tp.Optional[float]) -> str:
        return "set" if given is not None else "read from the picture"
    return (f"Asked for {descriptors['onset_rate']:.1f} onsets/s ({source(settings.onset_rate)}) at "
            f"{descriptors['register_hz']:.0f} Hz ({source(settings.register_hz)}).")


class MusicDemo:
    """The demo's state: one shared model, a lock (one generation at a time), the stop flag of each session's
    generation, a temp folder.

    Args:
        model: the loaded `VidMuse`.
        max_duration: longest music generated (s); longer videos are cut, with a notice.
        model_checksum: recorded in the sidecar next to each result.
    """

    def __init__(self, model: VidMuse, max_duration: float = 60.0, model_checksum: tp.Optional[str] = None):
        self.model = model
        self.max_duration = max_duration
        self.model_checksum = model_checksum
        self.lock = threading.Lock()
        self.stops: tp.Dict[tp.Optional[str], threading.Event] = {}  # session -> stop flag of its generation
        self.workdir = Path(tempfile.mkdtemp(prefix="vidmuse_demo_"))

    def close(self):
        shutil.rmtree(self.workdir, ignore_errors=True)

    def _clean_old_outputs(self):
        now = time.time()
        for folder in self.workdir.iterdir():
            if now - folder.stat().st_mtime > MAX_TEMP_AGE:
                shutil.rmtree(folder, ignore_errors=True)

    def interrupt(self, request: tp.Optional[gr.Request] = None) -> str:
        """Stop the generation of the session that asks (it ends at its next decoding step); no other."""
        stop = self.stops.get(session_of(request))
        if stop is None:
            return "Nothing to interrupt."
        stop.set()
        return "Interrupted."

    def generate(self, video: tp.Optional[str], image: tp.Optional[str], image_duration: float, top_k: int,
                 top_p: float, temperature: float, cfg_coef: float, seed: int, max_duration: float,
                 description: str = "", sync_cuts: bool = False, draws: tp.Optional[int] = None,
                 onset_rate: tp.Optional[float] = None, register_hz: tp.Optional[float] = None,
                 progress: gr.Progress = gr.Progress(),
                 request: tp.Optional[gr.Request] = None) -> tp.Tuple[str, str, tp.List[str], str]:
        """Music for the uploaded video (or image). Returns the muxed mp4, the wav, the files to download and a
        status line. For a model with music descriptors: `draws` per video, the nearest kept (None: the model's
        own), and the `onset_rate` (per second) and `register_hz` asked for (None: read from the picture). Bad
        input or parameters raise `gr.Error` with the reason, shown in the page; so does an Interrupt from the
        same session."""
        source = video or image
        if not source:
            raise gr.Error("Upload a video or an image first.")
        path = Path(source)
        cap = min(float(max_duration), self.max_duration)
        notices = []
        if not is_image(path):
            try:
                duration = probe_video(path).duration
            except VideoReadError as err:
                raise gr.Error(f"Cannot use this file: {err.reason}.") from None
            if duration > cap:
                notices.append(f"The video is {duration:.1f} s long: music is generated for its first {cap:.0f} s.")
                gr.Warning(notices[-1])
        try:
            settings = GenerationSettings(top_k=int(top_k), top_p=float(top_p), temperature=float(temperature),
                                          cfg_coef=float(cfg_coef), seed=None if seed < 0 else int(seed),
                                          max_duration=cap, image_duration=min(float(image_duration), cap),
                                          description=(description or "").strip() or None,
                                          sync_cuts=bool(sync_cuts),
                                          rerank_candidates=None if draws is None else int(draws),
                                          onset_rate=None if onset_rate is None else float(onset_rate),
                                          register_hz=None if register_hz is None else float(register_hz))
            settings.check_for(self.model)
        except ValueError as err:
            raise gr.Error(f"Cannot use these parameters: {err}.") from None
        seed_used = settings.seed if settings.seed is not None else draw_seed()
        settings = replace(settings, seed=seed_used)
        session, stop = session_of(request), threading.Event()
        self.stops[session] = stop  # before the lock: an Interrupt while waiting for it counts too
        try:
            with self.lock:
                paths, item, sidecar = self._generate(path, settings, stop, progress)
        finally:
            if self.stops.get(session) is stop:
                del self.stops[session]
        status = " ".join(notices + [f"{item.duration:.1f} s of music, seed {seed_used}."]
                          + ([descriptors_status(sidecar["music_descriptors"], settings)]
                             if sidecar["music_descriptors"] else [])
                          + ([cut_sync_status(sidecar["cut_sync"])] if sidecar["cut_sync"] else []))
        return str(paths.mp4), str(paths.wav), [str(paths.mp4), str(paths.wav), str(paths.sidecar)], status

    def _generate(self, path: Path, settings: GenerationSettings, stop: threading.Event, progress: gr.Progress
                  ) -> tp.Tuple[OutputPaths, PreparedInput, tp.Dict[str, tp.Any]]:
        """Generate and write the outputs of one request (under the lock); `stop` ends it at a decoding step."""
        self._clean_old_outputs()
        try:
            item = prepare_input(self.model, path, settings)
        except (VideoReadError, ValueError) as err:
            raise gr.Error(f"Cannot use this file: {getattr(err, 'reason', err)}.") from None

        def on_step(done: int, total: int):
            if stop.is_set():
                raise GenerationInterrupted()
            progress((done, total), desc="Composing", unit="steps")

        settings.configure(self.model)
        self.model.set_custom_progress_callback(on_step)
        try:
            music = generate_music(self.model, [item], settings, settings.seed)[0]
        except GenerationInterrupted:
            raise gr.Error("Generation interrupted.") from None
        finally:
            self.model.set_custom_progress_callback(None)
        paths = output_paths([path], Path(tempfile.mkdtemp(dir=self.workdir)))[path]
        sidecar = write_outputs(self.model, item, music, paths, settings, settings.seed, self.model_checksum)
        return paths, item, sidecar


def build_ui(demo: MusicDemo) -> gr.Blocks:
    """The page: inputs, parameters, Generate / Interrupt, outputs."""
    descriptors = demo.model.lm.visual_config.music_descriptors  # their controls are shown only then
    low, high = (readable_descriptors(v) for v in demo.model.lm.video_encoder.descriptor_range())
    with gr.Blocks(title="VidMuse: music for your video", delete_cache=(MAX_TEMP_AGE, MAX_TEMP_AGE)) as ui:
        gr.Markdown("# VidMuse\nUpload a video (or an image) and get music that follows it.")
        with gr.Row():
            with gr.Column():
                with gr.Tab("Video"):
                    video = gr.Video(label="Video", sources=["upload"])
                    examples = sorted(p for p in EXAMPLES.glob("*.mp4")) if EXAMPLES.is_dir() else []
                    if examples:
                        gr.Examples([[str(p)] for p in examples], inputs=[video])
                with gr.Tab("Image"):
                    image = gr.Image(label="Image", type="filepath", sources=["upload"])
                    image_duration = gr.Slider(2, 30, value=10, step=1, label="Music length for an image (s)")
                description = gr.Textbox(label="Description (optional): the music you want",
                                         visible=demo.model.lm.has_text_conditioner)
                sync_cuts = gr.Checkbox(False, label=f"Beats on the video's cuts (local tempo changes of at most "
                                        f"{100 * DEFAULT_MAX_TEMPO_CHANGE:.0f} %)")
                with gr.Accordion("Parameters", open=False):
                    top_k = gr.Number(250, label="Top-k", precision=0, minimum=0)
                    top_p = gr.Number(0.0, label="Top-p", minimum=0, maximum=1)
                    temperature = gr.Number(1.0, label="Temperature", minimum=0)
                    cfg_coef = gr.Number(3.0, label="Classifier-free guidance")
                    seed = gr.Number(-1, label="Seed (-1: random)", precision=0)
                    max_duration = gr.Slider(1, demo.max_duration, value=demo.max_duration, step=1,
                                             label="Maximum duration (s)")
                    draws = gr.Slider(1, 8, value=demo.model.rerank_candidates, step=1,
                                      label="Draws per video (the one nearest the music the picture asks for is kept; "
                                      "time grows with them)", visible=descriptors)
                    onset_rate = gr.Number(None, label=f"Onsets per second, {low['onset_rate']:.1f}-"
                                           f"{high['onset_rate']:.1f} (empty: read from the picture)",
                                           minimum=low["onset_rate"], maximum=high["onset_rate"], visible=descriptors)
                    register_hz = gr.Number(None, label=f"Register in Hz, {low['register_hz']:.0f}-"
                                            f"{high['register_hz']:.0f} (empty: read from the picture)",
                                            minimum=low["register_hz"], maximum=high["register_hz"],
                                            visible=descriptors)
                with gr.Row():
                    submit = gr.Button("Generate", variant="primary")
                    stop = gr.Button("Interrupt")
            with gr.Column():
                result_video = gr.Video(label="Video with music", elem_id="result-video")
                result_audio = gr.Audio(label="Music", type="filepath")
                files = gr.File(label="Downloads", file_count="multiple")
                status = gr.Markdown(elem_id="status")
        generation = submit.click(demo.generate, [video, image, image_duration, top_k, top_p, temperature, cfg_coef,
                                                  seed, max_duration, description, sync_cuts, draws, onset_rate,
                                                  register_hz],
                                  [result_video, result_audio, files, status], api_name="generate",
                                  concurrency_limit=1)
        # Gradio's cancellation takes this session's waiting requests out of the queue; a running one (a sync
        # function Gradio cannot stop) sees its session's stop flag at its next decoding step.
        stop.click(demo.interrupt, None, status, api_name="interrupt", concurrency_limit=None, queue=False,
                   cancels=[generation])
    return ui


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m demos.VidMuse_app", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(parser)
    parser.add_argument("--listen", default="127.0.0.1", nargs="?", const="0.0.0.0",
                        help="address to serve on (--listen alone: 0.0.0.0, all interfaces)")
    parser.add_argument("--server_port", type=int, default=7860)
    parser.add_argument("--share", action="store_true", help="create a public Gradio link")
    parser.add_argument("--username", default=None)
    parser.add_argument("--password", default=None)
    parser.add_argument("--inbrowser", action="store_true", help="open the page in a browser")
    parser.add_argument("--max_duration", type=float, default=60.0, help="longest music per request (s)")
    return parser


def main(argv: tp.Optional[tp.Sequence[str]] = None) -> int:
    args = get_parser().parse_args(argv)
    setup_logging(logging.INFO)
    if bool(args.username) != bool(args.password):
        logger.error("--username and --password go together")
        return 2
    loaded = load_model_from_args(args)
    demo = MusicDemo(loaded.model, max_duration=args.max_duration, model_checksum=loaded.checksum)
    ui = build_ui(demo)
    ui.queue(default_concurrency_limit=1, max_size=32)
    try:
        ui.launch(server_name=args.listen, server_port=args.server_port, share=args.share,
                  inbrowser=args.inbrowser, auth=(args.username, args.password) if args.username else None)
    finally:
        demo.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
