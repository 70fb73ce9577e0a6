"""The Gradio demo: its functions, its API through gradio_client, and a real browser (Chromium + Playwright)."""

import json
from pathlib import Path
import shutil
import socket
import threading
import time
import typing as tp

import gradio as gr
import numpy as np
import pytest
import soundfile

from audiocraft_ext.media.audio import read_audio_track
from audiocraft_ext.media.video import probe_video
from audiocraft_ext.models.vidmuse import VidMuse
from audiocraft_ext.synth.rhythm import write_cut_video
from audiocraft_ext.synth.scenes import Scene, Shape, write_image
from demos.VidMuse_app import MusicDemo, build_ui, cut_sync_status

from conftest import descriptor_model
from media import write_video

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
PARAMS = dict(image_duration=3, top_k=250, top_p=0.0, temperature=1.0, cfg_coef=3.0, seed=0, max_duration=8)


@pytest.fixture(scope="module")
def demo(tiny_checkpoint):
    app = MusicDemo(VidMuse.get_pretrained(tiny_checkpoint, device="cpu"), max_duration=8)
    yield app
    app.close()


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """A 2 s video with its own sine soundtrack (the demo must replace it with new music)."""
    return write_video(tmp_path_factory.mktemp("upload") / "upload clip.mp4", 50, 25, audio_seconds=2.0)


def test_generate_writes_video_audio_and_downloads(demo, clip):
    video, audio, files, status = demo.generate(str(clip), None, **PARAMS)
    assert soundfile.info(audio).frames == 2 * 32000
    assert probe_video(video).has_audio and abs(probe_video(video).duration - 2.0) < 1e-3
    assert {Path(f).suffix for f in files} == {".mp4", ".wav", ".json"}
    assert "seed 0" in status


def test_image_upload_and_seed_reproducibility(demo, tmp_path):
    image = write_image(tmp_path / "pic.png", Scene(1.0, shapes=[Shape()]), (80, 60))
    _, first, _, _ = demo.generate(None, str(image), **PARAMS)
    _, again, _, _ = demo.generate(None, str(image), **PARAMS)
    assert soundfile.info(first).frames == 3 * 32000
    assert np.array_equal(soundfile.read(first)[0], soundfile.read(again)[0])


def test_bad_uploads_get_a_clear_message(demo, clip, tmp_path):
    junk = tmp_path / "junk.mp4"
    junk.write_text("not a video")
    with pytest.raises(gr.Error, match="Cannot use this file"):
        demo.generate(str(junk), None, **PARAMS)
    with pytest.raises(gr.Error, match="Upload a video"):
        demo.generate(None, None, **PARAMS)
    with pytest.raises(gr.Error, match="Cannot use these parameters: .*top_k must be >= 0"):
        demo.generate(str(clip), None, **dict(PARAMS, top_k=-1))
    with pytest.raises(gr.Error, match="needs a model built with music descriptors"):  # draws are ranked by them
        demo.generate(str(clip), None, draws=2, **PARAMS)
    with pytest.raises(gr.Error, match="onset_rate and register_hz need a model built with music descriptors"):
        demo.generate(str(clip), None, onset_rate=2.0, **PARAMS)


def test_draws_control_of_a_model_with_music_descriptors(tmp_path, tiny_lm_cfg, tiny_codec, clip):
    model = descriptor_model(tmp_path / "model", tiny_lm_cfg, tiny_codec, **{"music_descriptors.rerank_candidates": 3})
    app = MusicDemo(model, max_duration=8)
    try:
        for draws, recorded in ((2, 2), (None, 3)):  # None: the model's own count, whatever the previous request set
            _, _, files, status = app.generate(str(clip), None, draws=draws, **PARAMS)
            sidecar = json.loads(Path(next(f for f in files if f.endswith(".json"))).read_text())
            assert sidecar["parameters"]["rerank_candidates"] == recorded
            read = sidecar["music_descriptors"]
            assert (f"Asked for {read['onset_rate']:.1f} onsets/s (read from the picture) at "
                    f"{read['register_hz']:.0f} Hz (read from the picture).") in status
        _, _, files, status = app.generate(str(clip), None, onset_rate=1.5, **PARAMS)
        assert f"Asked for 1.5 onsets/s (set) at {read['register_hz']:.0f} Hz (read from the picture)." in status
        sidecar = json.loads(Path(next(f for f in files if f.endswith(".json"))).read_text())
        assert sidecar["parameters"]["onset_rate"] == 1.5 and sidecar["music_descriptors"] == pytest.approx(
            {"onset_rate": 1.5, "register_hz": read["register_hz"]})
        with pytest.raises(gr.Error, match="Cannot use these parameters: register_hz must be in"):
            app.generate(str(clip), None, register_hz=20000, **PARAMS)
    finally:
        app.close()


def test_beats_on_cuts_checkbox_syncs_and_says_what_it_did(demo, tmp_path):
    video = tmp_path / "cuts.mp4"
    cuts = write_cut_video(video, [1.2, 1.6, 1.2], seed=2)
    _, audio, files, status = demo.generate(str(video), None, sync_cuts=True, **PARAMS)
    sidecar = json.loads(Path(next(f for f in files if f.endswith(".json"))).read_text())
    assert sidecar["parameters"]["sync_cuts"] is True
    assert cuts == pytest.approx([1.2, 2.8]) and sidecar["cut_sync"]["cuts"] == pytest.approx(cuts, abs=1e-6)
    assert soundfile.info(audio).frames == round(4.0 * 32000)
    assert cut_sync_status(sidecar["cut_sync"]) in status
    assert cut_sync_status({"status": "no_cuts", "cuts": []}) == "Music left as generated: the video has no cut."
    assert cut_sync_status({"status": "synced", "cuts": [1.0, 2.0], "hits_before": 0, "hits_after": 2,
                            "largest_tempo_change": 0.08}) == ("Beats on 2 of 2 cuts (were 0), tempo changed by "
                                                               "at most 8 %.")


def test_long_video_is_capped_with_a_notice(demo, tmp_path):
    long_clip = write_video(tmp_path / "long.mp4", 120, 10)  # 12 s > 8 s cap
    _, audio, _, status = demo.generate(str(long_clip), None, **PARAMS)
    assert soundfile.info(audio).frames == 8 * 32000
    assert "12.0 s long" in status


def test_interrupt_stops_a_running_generation(demo, clip, monkeypatch):
    """Interrupt pressed while decoding: the flag is seen at the next step and the request ends with a notice."""
    steps = []
    real_generate = demo.model.generate

    def generate_then_interrupt(*args, **kwargs):
        demo.model.set_custom_progress_callback(
            (lambda callback: lambda done, total: (steps.append(done), callback(done, total)))(
                demo.model._progress_callback))
        assert demo.interrupt() == "Interrupted."  # as the Interrupt button does, from another request
        return real_generate(*args, **kwargs)

    monkeypatch.setattr(demo.model, "generate", generate_then_interrupt)
    with pytest.raises(gr.Error, match="interrupted"):
        demo.generate(str(clip), None, **PARAMS)
    assert steps == [1]  # stopped at the first decoding step, not at the end
    assert demo.interrupt() == "Nothing to interrupt."
    monkeypatch.undo()
    demo.generate(str(clip), None, **PARAMS)  # the next request runs normally


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(demo):
    ui = build_ui(demo)
    ui.queue(default_concurrency_limit=1)
    port = free_port()
    ui.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    yield f"http://127.0.0.1:{port}/"
    ui.close()


def test_gradio_client_end_to_end(server, clip):
    from gradio_client import Client, handle_file
    client = Client(server, verbose=False)
    video, audio, files, status = client.predict(
        handle_file(str(clip)), None, 3, 250, 0.0, 1.0, 3.0, 0, 8, "", False, api_name="/generate")
    path = video["video"] if isinstance(video, dict) else video
    assert abs(probe_video(path).duration - 2.0) < 1e-3
    assert soundfile.info(audio).frames == 2 * 32000
    assert len(files) == 3


class PausedGeneration:
    """Holds every generation at its first decoding step until `resume()`; records the steps and the time span
    of each generation."""

    def __init__(self, model, monkeypatch, pause: bool = True):
        self.model, self.pause = model, pause
        self.running, self.resumed = threading.Event(), threading.Event()
        self.steps: tp.List[int] = []
        self.spans: tp.List[tp.Tuple[float, float]] = []
        self.real_generate = model.generate
        monkeypatch.setattr(model, "generate", self.generate)

    def generate(self, *args, **kwargs):
        callback = self.model._progress_callback  # the demo's: it checks the session's stop flag

        def on_step(done: int, total: int):
            self.steps.append(done)
            if done == 1 and self.pause:
                self.running.set()
                self.resumed.wait(60)
            callback(done, total)

        self.model.set_custom_progress_callback(on_step)
        start = time.monotonic()
        try:
            return self.real_generate(*args, **kwargs)
        finally:
            self.spans.append((start, time.monotonic()))

    def resume(self):
        self.resumed.set()


def request(clip: Path, seed: int = 0, max_duration: int = 8) -> tuple:
    from gradio_client import handle_file
    return handle_file(str(clip)), None, 3, 250, 0.0, 1.0, 3.0, seed, max_duration, ""


def test_interrupt_stops_only_the_generation_of_its_own_session(demo, server, clip, monkeypatch):
    from gradio_client import Client
    visitor_a, visitor_b = Client(server, verbose=False), Client(server, verbose=False)
    paused = PausedGeneration(demo.model, monkeypatch)
    try:
        job = visitor_a.submit(*request(clip), api_name="/generate")
        assert paused.running.wait(60)
        assert visitor_b.predict(api_name="/interrupt") == "Nothing to interrupt."  # B has no generation
    finally:
        paused.resume()
    _, audio, _, status = job.result(timeout=120)
    assert "seed 0" in status and soundfile.info(audio).frames == 2 * 32000
    assert paused.steps[-1] == 100  # A's generation ran to its end

    paused.running.clear()
    paused.resumed.clear()
    paused.steps.clear()
    try:
        job = visitor_a.submit(*request(clip), api_name="/generate")
        assert paused.running.wait(60)
        assert visitor_a.predict(api_name="/interrupt") == "Interrupted."
    finally:
        paused.resume()
    with pytest.raises(Exception, match="Generation interrupted"):
        job.result(timeout=120)
    assert paused.steps == [1]  # A's own Interrupt ended it at the next step


def test_concurrent_requests_are_served_one_at_a_time(demo, server, clip, monkeypatch):
    from gradio_client import Client
    paused = PausedGeneration(demo.model, monkeypatch, pause=False)
    visitors = [Client(server, verbose=False) for _ in range(6)]
    jobs = [visitor.submit(*request(clip, seed, max_duration=1), api_name="/generate")
            for seed, visitor in enumerate(visitors)]
    results = [job.result(timeout=300) for job in jobs]
    assert all(status.endswith(f"1.0 s of music, seed {seed}.") for seed, (*_, status) in enumerate(results))
    spans = sorted(paused.spans)
    assert len(spans) == 6 and all(end <= next_start for (_, end), (next_start, _) in zip(spans, spans[1:]))


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (installed by `make test`)")
def test_real_browser_upload_generate_and_play(server, clip, tmp_path):
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.goto(server)
        page.locator("input[type=file]").first.set_input_files(str(clip))
        page.get_by_role("button", name="Generate").click()
        result = page.locator("#result-video video")
        result.wait_for(state="attached", timeout=120_000)
        page.wait_for_function("document.querySelector('#status') && "
                               "document.querySelector('#status').innerText.includes('seed')", timeout=120_000)
        src = result.get_attribute("src")
        screenshot = tmp_path / "demo_result.png"
        page.screenshot(path=str(screenshot), full_page=True)
        data = page.request.get(src).body()
        browser.close()
    downloaded = tmp_path / "result.mp4"
    downloaded.write_bytes(data)
    assert screenshot.stat().st_size > 10_000
    info = probe_video(downloaded)
    assert info.has_audio and abs(info.duration - 2.0) < 1e-3
    music, _ = read_audio_track(downloaded, 32000)
    upload, _ = read_audio_track(clip, 32000)
    n = min(music.shape[1], upload.shape[1])
    correlation = np.corrcoef(music[0, :n].numpy(), upload[0, :n].numpy())[0, 1]
    assert abs(correlation) < 0.5, "the page returned the upload's own audio"
    assert abs(music.shape[1] / 32000 - 2.0) < 0.05
