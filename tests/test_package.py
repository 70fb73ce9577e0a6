"""The package as users meet it: its public names, and a quiet start."""

from pathlib import Path
import subprocess
import sys

ROOT = Path(__file__).resolve().parents[1]


def run_python(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=ROOT)


def test_a_cli_prints_no_xformers_notice_and_other_xformers_messages_still_show():
    result = run_python("-m", "audiocraft_ext.infer", "--help")
    assert result.returncode == 0 and "--model_path" in result.stdout
    assert "Memory-efficient attention, SwiGLU, sparse and more won't be available" not in result.stderr
    assert "xFormers" not in result.stderr
    other = run_python("-c", "import audiocraft_ext, logging; logging.getLogger('xformers').warning('kept message')")
    assert "kept message" in other.stderr
