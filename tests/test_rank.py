"""`pedlib rank`: end to end on generated folders and on Flowers-12, and its bad inputs."""

import json
import re

import numpy as np
import pandas as pd
import pytest
import torch
import torchvision
from PIL import Image

from pedlib import metrics
from pedlib.cli import main
from pedlib.models import Backbone
from pedlib.models.hub import WeightsUnavailable, resolve

from conftest import needs_assets

FAST = ["lenet5_clean", "cifar_resnet20", "mlperf_resnet8"]


@pytest.fixture
def folder(tmp_path):
    """3 colour classes (8 images each, mixed sizes and modes), a 1-image class, a broken file."""
    rng = np.random.default_rng(0)
    root = tmp_path / "images"
    for name, colour in (("red", (220, 30, 30)), ("green", (30, 200, 40)), ("blue", (20, 40, 230))):
        (root / name).mkdir(parents=True)
        for i in range(8):
            size = (24 + 4 * i, 32)
            pixels = np.clip(np.array(colour) + rng.normal(0, 25, size=(size[1], size[0], 3)), 0, 255)
            image = Image.fromarray(pixels.astype(np.uint8))
            image = image.convert(["RGB", "L", "RGBA", "P"][i % 4]) if name != "red" else image
            image.save(root / name / f"{i}.png")
    (root / "single").mkdir()
    Image.new("RGB", (30, 30), (128, 128, 128)).save(root / "single" / "only.jpg")
    (root / "blue" / "corrupt.jpg").write_bytes(b"\xff\xd8 truncated")
    # a real JPEG cut short: its header reads, its pixels do not
    Image.fromarray(rng.integers(0, 255, size=(64, 64, 3), dtype=np.uint8)).save(root / "red" / "cut.jpg")
    whole = (root / "red" / "cut.jpg").read_bytes()
    (root / "red" / "cut.jpg").write_bytes(whole[: len(whole) // 2])
    return root


@needs_assets
def test_rank_on_a_generated_folder_writes_a_correct_ranking(folder, tmp_path, capsys):
    out = tmp_path / "out"
    with pytest.warns(UserWarning, match="single"):
        from pedlib.rank import rank_models
        result = rank_models(folder, FAST, out=out, progress=False)
    assert main(["rank", str(folder), "--models", *FAST, "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr()
    assert "2 unreadable skipped" in printed.out and "single" in printed.out
    # one message style, each on its own line: the log's and the warnings'
    assert "pedlib: warning: dropping 1 class(es) with a single image" in printed.err
    assert re.search(r"^pedlib: warning: imagefolder:\S+: skipping 2 unreadable image\(s\)", printed.err, re.M)
    assert not any(line.lower().startswith("warning:") for line in printed.err.splitlines())
    table = pd.read_csv(out / "ranking.csv")
    assert sorted(table.model) == sorted(FAST) and sorted(table["rank"]) == [1, 2, 3]
    assert list(table.score) == sorted(table.score, reverse=True)  # sorted by the default key
    labels = result.source.labels[result.indices]
    assert len(labels) == 24 and len(np.unique(labels)) == 3
    for row in table.itertuples():  # the score is LogME of the cached features, recomputed here
        expected = metrics.get("logme")(result.features(row.model).astype(np.float64), labels)
        assert row.score == pytest.approx(expected, rel=1e-12)
    run = json.loads((out / "ranking.json").read_text())["run"]
    assert run["dropped_classes"] == ["single"]
    # without --reference PED uses the target's own statistics: one warning line, and the record says so
    assert printed.err.count("pedlib: warning: no --reference: PED standardises") == 1
    assert run["reference"] is None and run["reference_note"].startswith("no --reference")
    assert sorted(p.rsplit("/", 1)[-1] for p in run["skipped_unreadable"]) == ["corrupt.jpg", "cut.jpg"]
    assert (out / "ranking.png").read_bytes()[:4] == b"\x89PNG"


@needs_assets
def test_rank_resumes_from_cached_features(folder, tmp_path, monkeypatch):
    out = tmp_path / "out"
    assert main(["rank", str(folder), "--models", *FAST[:2], "--out", str(out), "--quiet"]) == 0
    first = pd.read_csv(out / "ranking.csv")

    def fail(*args, **kwargs):
        raise AssertionError("features were recomputed")

    monkeypatch.setattr(Backbone, "extract", fail)
    monkeypatch.setattr(Backbone, "features_of", fail)
    assert main(["rank", str(folder), "--models", *FAST[:2], "--out", str(out), "--quiet"]) == 0
    assert pd.read_csv(out / "ranking.csv")[["model", "score"]].equals(first[["model", "score"]])


@needs_assets
def test_rank_recomputes_a_truncated_feature_file_and_names_it(folder, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["rank", str(folder), "--models", FAST[0], "--out", str(out), "--quiet"]) == 0
    first = pd.read_csv(out / "ranking.csv")
    (cached,) = (out / "cache" / "features").rglob("target-train.npz")
    whole = cached.read_bytes()
    cached.write_bytes(whole[: len(whole) // 2])
    capsys.readouterr()
    assert main(["rank", str(folder), "--models", FAST[0], "--out", str(out), "--quiet"]) == 0
    warned = [line for line in capsys.readouterr().err.splitlines() if "does not match its record" in line]
    assert len(warned) == 1 and warned[0].startswith(f"pedlib: warning: {cached} ")
    assert pd.read_csv(out / "ranking.csv")[["model", "score"]].equals(first[["model", "score"]])


@needs_assets
def test_two_ranks_on_one_output_at_once_take_turns_and_agree(folder, tmp_path):
    """Two `pedlib rank` processes on one output folder while a third run holds it: each says
    in one line that it waits; once it is free they take turns (the second reuses the first's
    features), and both succeed with the ranking of a single run, no file half-written."""
    import subprocess
    import sys
    import time

    from filelock import FileLock

    single = tmp_path / "single"
    assert main(["rank", str(folder), "--models", *FAST[:2], "--out", str(single), "--quiet"]) == 0
    shared = tmp_path / "shared"
    (shared / "cache").mkdir(parents=True)
    command = [sys.executable, "-m", "pedlib", "rank", str(folder), "--models", *FAST[:2], "--out", str(shared),
               "--quiet"]
    logs = [tmp_path / f"run{i}.err" for i in range(2)]
    with FileLock(shared / "cache" / ".lock"):
        runs = [subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log.open("w")) for log in logs]
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not all("another run of the rank study" in log.read_text() for log in logs):
            time.sleep(0.2)
    assert [run.wait(timeout=600) for run in runs] == [0, 0], [log.read_text()[-2000:] for log in logs]
    for log in logs:
        assert [line for line in log.read_text().splitlines() if "waiting" in line] == [
            f"pedlib: warning: another run of the rank study holds {(shared / 'cache' / '.lock').resolve()}; "
            "waiting for it to finish (its results are then reused)"]
    expected = pd.read_csv(single / "ranking.csv")[["model", "score", "score_ped"]]
    assert pd.read_csv(shared / "ranking.csv")[["model", "score", "score_ped"]].equals(expected)
    assert not [p for p in shared.rglob("*") if p.name.endswith(".tmp")]


@needs_assets
def test_rank_on_flowers_puts_the_imagenet_mobilenet_first(tmp_path):
    from pedlib import assets

    flowers = assets.resolve("data/flowers12") / "train"
    out = tmp_path / "flowers"
    models = ["lenet5_clean", "cifar_resnet20", "mobilenet_v1_0.25_128"]
    assert main(["rank", str(flowers), "--models", *models, "--max-per-class", "10", "--out", str(out), "--quiet"]) == 0
    table = pd.read_csv(out / "ranking.csv")
    assert len(table) == 3 and set(table.model) == set(models)
    # linear probes on Flowers-12: ImageNet MobileNets ~0.9, CIFAR ResNets ~0.6, LeNets lower
    assert table.model.iloc[0] == "mobilenet_v1_0.25_128" and table.model.iloc[-1] == "lenet5_clean"
    run = json.loads((out / "ranking.json").read_text())["run"]
    assert run["n_images"] == 120 and run["n_classes"] == 12


def test_rank_bad_inputs_fail_with_a_message(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["rank", str(tmp_path / "empty"), "--models", "lenet5_clean"]) == 2
    assert "no class sub-folders" in capsys.readouterr().err
    assert main(["rank", str(tmp_path / "nowhere"), "--models", "lenet5_clean"]) == 2
    assert "neither an image folder nor a .csv" in capsys.readouterr().err
    assert main(["rank", str(tmp_path), "--models", "lenet5_clen"]) == 2
    assert "did you mean 'lenet5_clean'" in capsys.readouterr().err
    assert main(["rank", str(tmp_path), "--models", "lenet5_clean", "--metric", "loggme"]) == 2
    assert "logme" in capsys.readouterr().err
    assert main(["rank", str(tmp_path), "--models", "lenet5_clean", "--max-per-class", "1"]) == 2


def test_one_class_left_is_an_error(tmp_path):
    from pedlib.rank import rank_models

    for name, count in (("a", 3), ("b", 1)):
        (tmp_path / name).mkdir()
        for i in range(count):
            Image.new("RGB", (8, 8), (i, 0, 0)).save(tmp_path / name / f"{i}.png")
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="at least 2 classes"):
        rank_models(tmp_path, ["lenet5_clean"], progress=False)


def test_checkpoint_models_load_strictly(tmp_path):
    net = torchvision.models.resnet18(num_classes=7)
    good = tmp_path / "good.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in net.state_dict().items()}}, good)
    backbone = resolve(f"resnet18={good}")
    images = np.random.default_rng(0).integers(0, 255, size=(2, 40, 50, 3), dtype=np.uint8)
    assert backbone.extract(images).shape == (2, 512)
    assert backbone.spec.weights.startswith("sha256:")
    bad = tmp_path / "bad.pth"
    torch.save({k: v for k, v in net.state_dict().items() if not k.startswith("layer4")}, bad)
    with pytest.raises(ValueError, match="missing keys.*layer4"):
        resolve(f"resnet18={bad}")
    with pytest.raises(FileNotFoundError):
        resolve(f"resnet18={tmp_path / 'absent.pth'}")


def test_an_unreachable_hub_fails_at_once_with_how_to_work_offline(monkeypatch, tmp_path, capsys, caplog):
    """No network: the hub (here a closed port on loopback) is probed once and timm runs in
    the hub's offline mode, so the command fails in well under a second instead of after
    huggingface_hub's five retries (47 s), with one line that says how to work offline."""
    import time

    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    started = time.perf_counter()
    with caplog.at_level("WARNING"):
        assert main(["rank", str(tmp_path), "--models", "timm:resnet18", "--quiet"]) == 2
    assert time.perf_counter() - started < 20
    assert not [r for r in caplog.records if "Retrying" in r.getMessage()]
    assert capsys.readouterr().err.strip().splitlines() == [
        "pedlib rank: no pretrained weights for timm:resnet18: the Hugging Face hub is unreachable and they "
        "are not in its local cache. To work offline, pass a local checkpoint as "
        "timm:resnet18=/path/to/weights.pth, or fetch them once with network access and set "
        "HF_HUB_OFFLINE=1 to use the hub's cache"]
    assert constants.HF_HUB_OFFLINE is False  # the offline mode lasted for the call only
    with pytest.raises(KeyError, match="unknown timm model"):
        resolve("timm:resnet_does_not_exist")


def test_torchvision_weights_without_network_fail_with_how_to_work_offline(monkeypatch):
    import urllib.error

    def no_network(*args, **kwargs):
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_network)
    with pytest.raises(WeightsUnavailable, match=r"^no pretrained weights ResNet18_Weights.IMAGENET1K_V1 for "
                       r"resnet18: torchvision could not fetch them \(URLError: .*\)\. To work offline, pass a "
                       r"local checkpoint as resnet18=/path/to/weights.pth"):
        resolve("resnet18")


@needs_assets
def test_select_notebook_runs_headless_on_a_folder(folder, tmp_path):
    papermill = pytest.importorskip("papermill")
    from conftest import ROOT

    out = tmp_path / "select"
    papermill.execute_notebook(str(ROOT / "notebooks" / "06_select.ipynb"), str(tmp_path / "06.ipynb"),
                               parameters={"data": str(folder), "models": FAST[:2], "out": str(out),
                                           "progress": False, "max_per_class": 5},
                               cwd=str(tmp_path), progress_bar=False, kernel_name="python3")
    table = pd.read_csv(out / "ranking.csv")
    assert sorted(table.model) == sorted(FAST[:2])
    executed = (tmp_path / "06.ipynb").read_text()
    assert executed.count("image/png") >= 3  # the bar chart and two cluster views


@needs_assets
def test_rank_device_reaches_the_backbone_for_every_name_form(tmp_path, monkeypatch):
    """``--device`` must reach the network whatever the name's form. PyTorch's "meta" device
    needs no GPU: a module moved there has its parameters there."""
    from pedlib.models import hub

    net = torchvision.models.resnet18(num_classes=3)
    checkpoint = tmp_path / "r18.pth"
    torch.save(net.state_dict(), checkpoint)
    # a torchvision name would download its weights: build it untrained instead
    build = hub._build
    monkeypatch.setattr(hub, "_build", lambda arch, pretrained: build(arch, pretrained=False))
    for name in ("cifar_resnet20", "mobilenet_v1_0.25_128", "lenet5_clean", "resnet18", f"resnet18={checkpoint}"):
        backbone = resolve(name, device="meta")
        assert backbone.device.type == "meta", name
        assert {p.device.type for p in backbone.module.parameters()} == {"meta"}, name


def _interruptible_and_last():
    """In the child before it runs: Ctrl-C's default action (a process started with SIGINT
    ignored, as a test runner's worker may have left it, keeps it ignored and Python then
    never raises KeyboardInterrupt), and the lowest priority, so that on a busy machine the
    test, waking every 20 ms, gets a core before the run's last batch (~0.7 s alone)."""
    import os
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)
    os.nice(19)


@needs_assets
def test_rank_interrupted_with_sigint_resumes_where_it_stopped(tmp_path):
    """Ctrl-C mid-extraction: one line, exit status 130, the batches done are kept; the rerun
    extracts only the rest and ends with the features an unbroken run gives."""
    import os
    import signal
    import subprocess
    import sys
    import time

    rng = np.random.default_rng(1)
    root = tmp_path / "images"
    for name in ("a", "b", "c"):
        (root / name).mkdir(parents=True)
        for i in range(100):  # long enough that the interrupt lands mid-extraction on a busy machine
            Image.fromarray(rng.integers(0, 255, size=(40, 40, 3), dtype=np.uint8)).save(root / name / f"{i}.png")
    command = [sys.executable, "-m", "pedlib", "rank", str(root), "--models", "cifar_resnet20",
               "--batch-size", "4", "--workers", "0", "--quiet"]
    env = {**os.environ, "PEDLIB_CHECKPOINT_SECONDS": "0"}  # save after every batch
    for attempt in range(3):  # again if this process was descheduled until the run had finished
        out = tmp_path / f"out{attempt}"
        partial = out / "cache" / "features" / "cifar_resnet20" / "target-train.npz.partial.npz"
        process = subprocess.Popen([*command, "--out", str(out)], env=env, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True, preexec_fn=_interruptible_and_last)
        deadline = time.monotonic() + 300
        while not partial.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=300)
        if process.returncode != 0:
            break
    assert process.returncode == 130, (stderr[-2000:], signal.getsignal(signal.SIGINT))
    assert "Traceback" not in stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("pedlib rank: interrupted after ") and last.endswith("rerun to resume"), last
    done = int(last.split("interrupted after ")[1].split("/")[0])
    assert 0 < done < 300

    resumed = subprocess.run([*command, "--out", str(out)], env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    features = out / "cache" / "features" / "cifar_resnet20" / "target-train.npz"
    record = json.loads(features.with_name("target-train.npz.record.json").read_text())
    assert record["resumed_from"] == done - done % 4 and not partial.exists()
    unbroken = subprocess.run([*command, "--out", str(tmp_path / "whole")], capture_output=True, text=True,
                              timeout=600)
    assert unbroken.returncode == 0, unbroken.stderr[-2000:]
    whole = np.load(tmp_path / "whole" / "cache" / "features" / "cifar_resnet20" / "target-train.npz")["features"]
    np.testing.assert_array_equal(np.load(features)["features"], whole)


@needs_assets
def test_rank_with_a_reference_scores_ped_with_every_reference_image(folder, tmp_path):
    """``--reference DIR``: the one-off study's reference is every image of DIR (labels unused),
    the same for each model; the PED column is PED with exactly those features, and ranking.json
    says which folder it was."""
    import pedlib
    from pedlib.rank import rank_models

    generic = tmp_path / "generic" / "any"
    generic.mkdir(parents=True)
    rng = np.random.default_rng(3)
    for i in range(6):
        Image.fromarray(rng.integers(0, 255, size=(30, 30, 3), dtype=np.uint8)).save(generic / f"{i}.png")
    with pytest.warns(UserWarning, match="single"):
        result = rank_models(folder, FAST[:2], reference=generic.parent, out=tmp_path / "out", progress=False)
    labels = result.source.labels[result.indices]
    for row in result.table.itertuples():
        reference = result.reference(row.model)
        assert reference.shape[0] == 6
        expected = pedlib.score(result.features(row.model).astype(np.float64), labels, "logme", ped=True,
                                reference=reference)
        assert row.score_ped == pytest.approx(expected, rel=1e-9)
    run = json.loads((tmp_path / "out" / "ranking.json").read_text())["run"]
    assert run["reference"] == str(generic.parent) and run["reference_note"] is None
