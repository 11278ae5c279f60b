"""The locked environment: the lock's parsing and comparison, the provenance it gives every
record, the core install without torch, and the one-line message for a missing extra."""

import importlib.util
import json
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import pedlib
from pedlib import lockfile, records

from conftest import ROOT

LOCK_TEXT = """\
# a comment
numpy==2.4.6 \\
    --hash=sha256:aa
Jinja2==3.1.6 \\
    --hash=sha256:bb
    # via nbconvert
backports.strenum==1.2.8 ; python_version >= "3.11"
"""


def _environment_script():
    spec = importlib.util.spec_from_file_location("environment_script", ROOT / "scripts" / "environment.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_lock_is_read_as_canonical_names_and_pins(tmp_path):
    path = tmp_path / "requirements.lock"
    path.write_text(LOCK_TEXT)
    assert lockfile.read_lock(path) == {"numpy": "2.4.6", "jinja2": "3.1.6", "backports-strenum": "1.2.8"}
    (tmp_path / "empty.lock").write_text("# nothing\n")
    with pytest.raises(ValueError, match="empty.lock: no 'name==version' line"):
        lockfile.read_lock(tmp_path / "empty.lock")


def test_differences_name_every_distribution_off_the_lock_but_pedlib():
    locked = {"numpy": "2.4.6", "scipy": "1.17.1", "pedlib": "0.1.0"}
    present = {"numpy": "2.4.6", "scipy": "1.18.0", "seaborn": "0.13.2", "pedlib": "0.2.0"}
    assert lockfile.differences(locked, present) == {
        "scipy": {"locked": "1.17.1", "installed": "1.18.0"},
        "seaborn": {"locked": None, "installed": "0.13.2"}}
    assert lockfile.differences(locked, locked) == {}


def test_make_setup_installs_exactly_the_lock():
    """What `make setup` checks at its end, checked again: this environment is the lock."""
    lock = ROOT / "requirements.lock"
    assert lockfile.differences(lockfile.read_lock(lock), lockfile.installed()) == {}
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "environment.py"), "check"],
                          capture_output=True, text=True)
    assert done.returncode == 0 and "exactly requirements.lock" in done.stdout, done.stderr


def test_the_lock_is_made_from_the_current_pyproject():
    """Editing pyproject.toml's requirements without `make lock` is caught by make setup."""
    script = _environment_script()
    assert script._header_field("made-from") == script.project_hash()


def test_every_record_names_the_lock_and_what_differs_from_it(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("a\n1\n")
    record = records.write_record(path, "k")
    environment = record["environment"]
    assert environment["lock"]["sha256"] == lockfile.lock_sha256(ROOT / "requirements.lock")
    assert environment["differs_from_lock"] == {}
    assert {"matplotlib", "fonttools", "timm", "pillow", "numpy"} <= set(record["versions"])
    assert record["payload"] == {"bytes": 4, "sha256": records.payload_digest(path)["sha256"]}


def test_a_pip_configuration_becomes_uvs_index_options(monkeypatch):
    script = _environment_script()
    monkeypatch.setattr(script, "pip_config", lambda: {
        "extra-index-url": ["file:///opt/a/simple", "file:///opt/b/simple"], "find-links": ["/opt/wheels"]})
    assert script.index_arguments() == ["--index-strategy", "unsafe-best-match",
                                        "--extra-index-url", "file:///opt/a/simple",
                                        "--extra-index-url", "file:///opt/b/simple", "--find-links", "/opt/wheels"]


CORE_CHECK = textwrap.dedent("""
    import importlib.util, json, sys
    import numpy as np
    import pedlib
    from pedlib import lockfile
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 30)
    features = rng.normal(size=(90, 16)) + labels[:, None] * 0.5
    reference = rng.normal(size=(200, 16))
    out = {"plain": pedlib.score(features, labels, "logme"),
           "ped": pedlib.score(features, labels, "logme", ped=True, reference=reference),
           "torch": importlib.util.find_spec("torch") is not None,
           "installed": sorted(lockfile.installed())}
    try:
        pedlib.study
    except ModuleNotFoundError as error:
        out["missing"] = str(error)
    print(json.dumps(out))
""")


def test_the_core_installs_alone_and_scores_logme_with_and_without_ped(tmp_path):
    """`pip install pedlib` (here uv, from its cache, offline) brings numpy, scipy and
    scikit-learn alone; LogME and LogME + PED give the numbers of the full environment; the
    pipeline asks for its extra in one line."""
    uv = shutil.which("uv", path=str(ROOT / ".venv" / "bin")) or shutil.which("uv")
    assert uv, "uv is pinned in requirements.lock (the dev extra): run make setup"
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "pedlib", source / "pedlib", ignore=shutil.ignore_patterns("__pycache__"))
    pins = lockfile.read_lock(ROOT / "requirements.lock")
    (tmp_path / "constraints.txt").write_text("".join(f"{n}=={v}\n" for n, v in pins.items()))
    venv = tmp_path / "core"
    base = getattr(sys, "_base_executable", sys.executable)
    indexes = _environment_script().index_arguments()
    subprocess.run([uv, "venv", "--quiet", "--python", base, str(venv)], check=True)
    installed = subprocess.run([uv, "pip", "install", "--quiet", "--offline", "--python", str(venv / "bin" / "python"),
                                *indexes, "--constraint", str(tmp_path / "constraints.txt"), str(source)],
                               capture_output=True, text=True)
    assert installed.returncode == 0, installed.stderr[-2000:]
    done = subprocess.run([str(venv / "bin" / "python"), "-c", CORE_CHECK], capture_output=True, text=True,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    core = json.loads(done.stdout)
    installed = set(core["installed"])  # scikit-learn's own requirements come along (joblib, threadpoolctl, ...)
    assert {"numpy", "scipy", "scikit-learn", "pedlib"} <= installed and len(installed) <= 10, installed
    assert not installed & {"torch", "torchvision", "timm", "pillow", "pandas", "matplotlib", "tqdm", "pyyaml",
                            "pooch", "ai-edge-litert", "h5py", "submitit", "papermill", "seaborn"}
    assert core["torch"] is False
    assert core["missing"] == ("pedlib.study needs pedlib's 'torch' extra (torch, torchvision, timm, PIL, tqdm, "
                               "yaml, pooch, pandas, matplotlib, filelock not installed): pip install 'pedlib[torch]'")
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 30)
    features = rng.normal(size=(90, 16)) + labels[:, None] * 0.5
    reference = rng.normal(size=(200, 16))
    assert core["plain"] == pedlib.score(features, labels, "logme")
    assert core["ped"] == pedlib.score(features, labels, "logme", ped=True, reference=reference)
    cli = subprocess.run([str(venv / "bin" / "python"), "-m", "pedlib", "rank", "x", "--models", "m"],
                         capture_output=True, text=True, cwd=tmp_path)
    assert cli.returncode == 2 and cli.stderr.strip().splitlines() == [
        "pedlib rank: pedlib.rank (pedlib rank) needs pedlib's 'torch' extra (torch, torchvision, timm, PIL, "
        "tqdm, yaml, pooch, pandas, matplotlib, filelock not installed): pip install 'pedlib[torch]'"]
