"""The package as users meet it: its public names, its layers, the same model flags in every command, a quiet
start."""

import ast
import importlib.metadata
from pathlib import Path
import re
import runpy
import subprocess
import sys
import typing as tp
from unittest import mock

import pytest

import audiocraft_ext
from audiocraft_ext import evaluate, infer, recommend
from audiocraft_ext.synth import evaluate as synth_evaluate
from audiocraft_ext.synth.scenes import Scene, write_image
from demos import VidMuse_app

ROOT = Path(__file__).resolve().parents[1]
# Low to high: a module imports from its own layer or lower ones only.
LAYERS = [
    {"audiocraft_ext", "audiocraft_ext.environment", "audiocraft_ext.utils"},
    {"audiocraft_ext.media"},
    {"audiocraft_ext.modules"},
    {"audiocraft_ext.models"},
    {"audiocraft_ext.data"},
    {"audiocraft_ext.solvers", "audiocraft_ext.synth", "audiocraft_ext.grids"},
    {"audiocraft_ext.pipeline"},
    CLIS := {f"audiocraft_ext.{name}" for name in ("infer", "recommend", "evaluate", "export", "train")},
    {"demos"},
]


def run_python(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=ROOT)


def test_public_names_come_from_the_package():
    from audiocraft_ext import VidMuse
    from audiocraft_ext.models.vidmuse import VidMuse as defined
    assert VidMuse is defined
    for name in audiocraft_ext.__all__:
        assert getattr(audiocraft_ext, name) is not None, name
    with pytest.raises(AttributeError):
        audiocraft_ext.not_a_name


def test_media_loads_no_model():
    result = run_python("-c", "import sys, audiocraft_ext.media, audiocraft_ext.media.video, "
                        "audiocraft_ext.media.extensions; print(sorted({'audiocraft', 'transformers', "
                        "'audiocraft_ext.models'} & set(sys.modules)))")
    assert result.returncode == 0 and result.stdout.strip() == "[]", result.stderr


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> tp.Set[str]:
    """Every module of this project that `path` imports (at its top or inside functions)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[:len(package.split(".")) - node.level + 1] if node.level else []
            target = ".".join([*base, node.module] if node.module else base)
            found |= {f"{target}.{alias.name}" for alias in node.names} if node.module is None else {target}
    return {m for m in found if m.split(".")[0] in ("audiocraft_ext", "demos")}


def layer(module: str) -> int:
    matches = [(len(prefix), index) for index, prefixes in enumerate(LAYERS) for prefix in prefixes
               if module == prefix or module.startswith(prefix + ".")]
    assert matches, f"{module} is on no layer"
    return max(matches)[1]


def test_no_module_imports_from_a_higher_layer_and_no_cli_imports_another():
    sources = [*ROOT.joinpath("audiocraft_ext").rglob("*.py"), *ROOT.joinpath("demos").rglob("*.py")]
    upward = []
    for path in sources:
        source = module_name(path)
        for target in imported_modules(path):
            cli_to_cli = layer(source) == layer(target) == LAYERS.index(CLIS) and target != source
            if layer(target) > layer(source) or cli_to_cli:
                upward.append(f"{source} -> {target}")
    assert not upward


def test_every_command_takes_the_same_model_flags_and_reports_a_bad_model_on_one_line(tmp_path, capsys):
    image = write_image(tmp_path / "inputs" / "picture.png", Scene(1.0), (64, 48))
    flags = ["--model_path", str(tmp_path / "nowhere"), "--device", "cpu", "--dtype", "bfloat16",
             "--clip_num_heads", "12"]
    commands = [
        lambda: infer.main(["--video_dir", str(image.parent), "--output_dir", str(tmp_path / "out"), *flags]),
        lambda: recommend.main(["--library", str(tmp_path), "--image", str(image), *flags]),
        lambda: evaluate.main(["--retrieval", "--manifest", str(tmp_path), *flags]),
        lambda: synth_evaluate.main(["--corpus", str(tmp_path), *flags]),
        lambda: VidMuse_app.main(flags),
    ]
    for command in commands:
        with pytest.raises(SystemExit) as exit_info:
            command()
        assert exit_info.value.code == 2
        error = capsys.readouterr().err.strip()
        assert error.startswith(f"error: cannot load the model from {tmp_path / 'nowhere'}: ") and "\n" not in error


def test_a_cli_prints_no_xformers_notice_and_other_xformers_messages_still_show():
    result = run_python("-m", "audiocraft_ext.infer", "--help")
    assert result.returncode == 0 and "--model_path" in result.stdout
    assert "Memory-efficient attention, SwiGLU, sparse and more won't be available" not in result.stderr
    other = run_python("-c", "import audiocraft_ext, logging; logging.getLogger('xformers').warning('kept message')")
    assert "kept message" in other.stderr


def setup_arguments() -> tp.Dict[str, tp.Any]:
    """The keyword arguments setup.py gives `setuptools.setup`."""
    captured: tp.Dict[str, tp.Any] = {}
    with mock.patch("setuptools.setup", lambda **kwargs: captured.update(kwargs)):
        runpy.run_path(str(ROOT / "setup.py"))
    return captured


def canonical_name(requirement: str) -> str:
    """The distribution name of a requirement (`hydra-core>=1.3` -> `hydra-core`), normalised as PEP 503 does."""
    return re.sub(r"[-_.]+", "-", re.match(r"[A-Za-z0-9._-]+", requirement).group()).lower()


def third_party_distributions(folder: Path) -> tp.Set[str]:
    """The distributions (canonical names) whose modules the files of `folder` import, AudioCraft aside."""
    modules = set()
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                modules.add(node.module.split(".")[0])
    providers = importlib.metadata.packages_distributions()
    return {canonical_name(dist) for module in modules - set(sys.stdlib_module_names)
            if module not in ("audiocraft", "audiocraft_ext", "demos", "conftest", "media")
            for dist in providers.get(module, [module])}


def test_setup_declares_what_the_code_imports():
    arguments = setup_arguments()
    names = lambda requirements: {canonical_name(r) for r in requirements}  # noqa: E731
    runtime, extras = names(arguments["install_requires"]), arguments["extras_require"]
    assert "audiocraft" not in runtime  # its pins cannot resolve on Python 3.11: installed with --no-deps
    assert third_party_distributions(ROOT / "audiocraft_ext") <= (runtime | names(extras["vocals"])  # demucs: optional
                                                               | names(extras["corpus"]))  # FluidSynth: corpus only
    assert third_party_distributions(ROOT / "demos") <= runtime | names(extras["demo"])
    assert third_party_distributions(ROOT / "tests") <= runtime | names(extras["test"])
    pinned = names(line for line in (ROOT / "requirements.txt").read_text().splitlines()
                   if line.strip() and not line.startswith("#"))
    assert runtime | names(extras["test"]) <= pinned  # the Makefile installs requirements.txt, then --no-deps
