"""Files from elsewhere are data: a checkpoint or pickle that would run code is refused, named,
and nothing runs; every supported format still loads."""

import argparse
import os
import pickle

import numpy as np
import pytest
import torch
import torchvision

import fakes
from pedlib import data
from pedlib.cli import main
from pedlib.models.hub import resolve
from pedlib.models.paper import load_ssl_resnet50
from pedlib.safe_files import UnsafeFile, load_checkpoint, load_pickle


class _RunsCode:
    """Unpickling this calls os.system: what a tampered file does."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_checkpoint_that_would_run_code_is_refused_by_every_loader(tmp_path, capsys):
    marker = tmp_path / "ran"
    state = {k: v for k, v in torchvision.models.resnet18().state_dict().items()}
    path = tmp_path / "tampered.pth"
    torch.save({"state_dict": state, "extra": _RunsCode(marker)}, path)
    message = rf"{path}: refused: loading it would call posix\.system, which is not data"
    for load in (load_checkpoint, load_ssl_resnet50, lambda p: resolve(f"resnet18={p}")):
        with pytest.raises(UnsafeFile, match=message):
            load(path)
    assert main(["rank", str(tmp_path), "--models", f"resnet18={path}", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"pedlib rank: {path}: refused: loading it would call posix.system")
    assert not marker.exists()


def test_checkpoints_keep_their_training_arguments_and_numbers(tmp_path):
    path = tmp_path / "release.pth"
    torch.save({"model": {"w": torch.ones(2)}, "opt": argparse.Namespace(lr=0.03), "epoch": 800,
                "best_acc": np.float64(0.75), "mean": np.arange(3.0)}, path)
    loaded = load_checkpoint(path)
    assert loaded["opt"] == argparse.Namespace(lr=0.03) and loaded["best_acc"] == 0.75
    assert np.array_equal(loaded["mean"], np.arange(3.0)) and torch.equal(loaded["model"]["w"], torch.ones(2))


def test_a_cifar_batch_that_would_run_code_is_refused_and_real_ones_load(tmp_path):
    marker = tmp_path / "ran"
    fakes.cifar10(tmp_path / "cifar10", train=5, test=1, classes=2)
    source = data.create("cifar10_python", root=str(tmp_path / "cifar10"))
    assert len(source) == 12 and source.classes == ("thing0", "thing1")
    batch = tmp_path / "cifar10" / "cifar-10-batches-py" / "data_batch_1"
    original = load_pickle(batch, encoding="bytes")
    # the file as numpy 1 (the release itself) names its rebuilders: numpy.core.multiarray
    old = pickle.dumps(original, protocol=2).replace(b"numpy._core", b"numpy.core")
    (tmp_path / "old").write_bytes(old)
    assert np.array_equal(load_pickle(tmp_path / "old", encoding="bytes")[b"data"], original[b"data"])
    batch.write_bytes(pickle.dumps({b"data": _RunsCode(marker), b"labels": [0]}))
    with pytest.raises(UnsafeFile, match=rf"{batch}: refused: loading it would call posix\.system"):
        data.create("cifar10_python", root=str(tmp_path / "cifar10"))
    assert not marker.exists()
