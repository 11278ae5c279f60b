"""The paper studies' fine-tuning: evaluation metrics, the sweep's pieces, resumable training."""

from functools import partial

import numpy as np
import pytest
import torch
from torch import nn

from pedlib.data import ImageSource
from pedlib.groundtruth import accuracy, sweep
from pedlib.models import ModelSpec
from pedlib.models.torch_backbone import TorchBackbone


# ---------------------------------------------------------------- evaluation metrics
def test_top1_and_mean_per_class_accuracy_by_hand():
    labels = np.array([0, 0, 0, 1])
    predicted = np.array([0, 0, 1, 0])
    assert accuracy.top1_accuracy(predicted, labels) == 0.5
    assert accuracy.mean_per_class_accuracy(predicted, labels) == pytest.approx((2 / 3 + 0) / 2)
    # classes absent from the labels do not count; a perfect prediction scores 1
    assert accuracy.mean_per_class_accuracy(np.array([5, 7]), np.array([5, 7])) == 1.0


def test_voc11_map_by_hand():
    # one class: ranked targets 1, 0, 1, 0 -> precision 1, 1/2, 2/3, 1/2 at recall 1/2, 1/2, 1, 1:
    # thresholds 0..0.5 (6 of them) reach precision 1, thresholds 0.6..1 (5) reach 2/3
    scores = np.array([[0.9], [0.8], [0.7], [0.6]])
    targets = np.array([[1], [0], [1], [0]])
    expected = (6 * 1 + 5 * 2 / 3) / 11
    assert accuracy.voc11_map(scores, targets) == pytest.approx(expected)
    # a difficult-only image (-1) is ignored wherever it ranks; a class without positives is skipped
    scores2 = np.array([[0.95, 0.1], [0.9, 0.2], [0.8, 0.3], [0.7, 0.4], [0.6, 0.5]])
    targets2 = np.array([[-1, 0], [1, 0], [0, 0], [1, 0], [0, 0]])
    assert accuracy.voc11_map(scores2, targets2) == pytest.approx(expected)
    # perfect ranking -> 1; perfectly inverted with 1 positive in 4 -> precision 1/4 everywhere
    assert accuracy.voc11_map(np.array([[2.0], [1.0]]), np.array([[1], [0]])) == 1.0
    assert accuracy.voc11_map(np.array([[4.0], [3.0], [2.0], [1.0]]),
                              np.array([[0], [0], [0], [1]])) == pytest.approx(0.25)


def test_evaluation_metrics_reject_bad_input():
    with pytest.raises(ValueError, match="must be equal"):
        accuracy.top1_accuracy(np.array([0, 1]), np.array([0]))
    with pytest.raises(ValueError, match="1 \\(present\\)"):
        accuracy.voc11_map(np.zeros((2, 1)), np.array([[2], [0]]))
    with pytest.raises(ValueError, match="no class has a positive"):
        accuracy.voc11_map(np.zeros((2, 1)), np.zeros((2, 1)))
    with pytest.raises(KeyError, match="unknown evaluation metric"):
        accuracy.evaluate("top5", np.zeros((2, 2)), np.array([0, 1]))
    assert accuracy.evaluate("accuracy", np.array([[0.1, 0.9], [0.8, 0.2]]), np.array([1, 1])) == 0.5


# ---------------------------------------------------------------- sweep pieces
def test_grid_divides_weight_decay_by_learning_rate():
    config = sweep.SweepConfig(learning_rates=(1e-4, 1e-1), weight_decays=(0.0, 1e-6))
    assert config.grid() == [(1e-4, 0.0), (1e-4, 1e-6 / 1e-4), (1e-1, 0.0), (1e-1, 1e-6 / 1e-1)]
    plain = sweep.SweepConfig(learning_rates=(0.1,), weight_decays=(1e-4,), weight_decay_per_lr=False)
    assert plain.grid() == [(0.1, 1e-4)]
    with pytest.raises(ValueError, match="learning rates must be > 0"):
        sweep.SweepConfig(learning_rates=(0.0,))
    # the paper's defaults: 4 learning rates x 5 weight decays, 5,000 steps
    paper = sweep.SweepConfig()
    assert len(paper.grid()) == 20 and paper.steps == 5000
    np.testing.assert_allclose(paper.learning_rates, np.logspace(-4, -1, 4))
    np.testing.assert_allclose(paper.weight_decays[1:], np.logspace(-6, -3, 4))


def test_batch_schedule_is_a_seeded_permutation_per_epoch():
    plan = sweep.batch_schedule(10, steps=7, batch_size=4, seed=3)
    assert plan.shape == (7, 4)
    # 2 whole batches per epoch (the remainder of 2 is dropped): each epoch has distinct positions
    for epoch in range(3):
        rows = plan[2 * epoch:2 * epoch + 2].ravel()
        assert len(set(rows.tolist())) == len(rows)
    np.testing.assert_array_equal(plan, sweep.batch_schedule(10, 7, 4, 3))
    assert not np.array_equal(plan, sweep.batch_schedule(10, 7, 4, 4))
    assert sweep.batch_schedule(3, steps=2, batch_size=8, seed=0).shape == (2, 3)  # batch <= set


def test_augment_keeps_shape_and_constants_and_flips_about_half():
    generator = torch.Generator().manual_seed(0)
    constant = torch.full((4, 3, 8, 8), 0.7)
    torch.testing.assert_close(sweep.augment_batch(constant, generator), constant)
    ramp = torch.linspace(0, 1, 16).expand(200, 1, 16, 16).contiguous()  # brighter to the right
    out = sweep.augment_batch(ramp, torch.Generator().manual_seed(1))
    assert out.shape == ramp.shape
    flipped = (out[:, 0, :, 0].mean(1) > out[:, 0, :, -1].mean(1)).float().mean()
    assert 0.35 < flipped < 0.65
    again = sweep.augment_batch(ramp, torch.Generator().manual_seed(1))
    torch.testing.assert_close(out, again)


def _source(n_per_class=6, classes=2, val=False, multilabel=False) -> ImageSource:
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(classes), n_per_class)
    images = (labels[:, None, None, None] * 120 + rng.integers(0, 60, size=(len(labels), 8, 8, 3))).astype(np.uint8)
    predefined = np.array(["train"] * len(labels), dtype=object)
    predefined[-classes:] = "test"
    if val:
        predefined[:classes] = "val"
    multilabels = None
    if multilabel:
        multilabels = np.eye(classes, dtype=np.int8)[labels]
        multilabels[0, 1] = -1
    return ImageSource("toy", labels, tuple(map(str, range(classes))),
                       lambda idx: images[np.asarray(idx)], 3, "toy-1", predefined.astype(str),
                       multilabels=multilabels, metric="map11" if multilabel else "accuracy")


def test_validation_split_uses_the_datasets_own_val_else_a_stratified_fraction():
    with_val = _source(val=True)
    train = np.flatnonzero(with_val.predefined != "test")
    fit, val = sweep.validation_split(with_val, train, 0.2, seed=0)
    np.testing.assert_array_equal(val, with_val.val)
    assert set(fit) | set(val) == set(train) and not set(fit) & set(val)
    plain = _source(n_per_class=11)
    train = np.flatnonzero(plain.predefined == "train")
    fit, val = sweep.validation_split(plain, train, 0.2, seed=0)
    assert set(fit) | set(val) == set(train) and not set(fit) & set(val)
    assert np.bincount(plain.labels[val]).tolist() == [2, 2]


class _Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(),
                                  nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.feature_dim = 4
        self.head = nn.Identity()

    def features(self, x):
        return self.body(x)

    def forward(self, x):
        return self.head(self.features(x))


def _backbone():
    spec = ModelSpec(name="tiny", asset="", runtime="torch", input_size=8, channels=3, normalisation="imagenet mean/std",
                     source="none", family="tiny", trainable=True)
    return TorchBackbone(spec, _Tiny())


def test_an_interrupted_job_resumes_to_the_same_weights(tmp_path):
    source = _source()
    fit = np.flatnonzero(source.predefined == "train")
    config = sweep.SweepConfig(steps=6, batch_size=4, checkpoint_every=2, augment=True, threads=1)
    train = partial(sweep.train, _backbone(), source, fit, learning_rate=0.05, weight_decay=1e-4,
                    seed=1, config=config)
    whole = train().state_dict()

    class Crash(Exception):
        pass

    def crash_after_four(done):
        if done == 5:
            raise Crash

    checkpoint = tmp_path / "job.ckpt.pt"
    with pytest.raises(Crash):
        train(checkpoint=checkpoint, key="k", on_step=crash_after_four)
    assert torch.load(checkpoint, weights_only=True)["step"] == 4
    steps = []
    resumed = train(checkpoint=checkpoint, key="k", on_step=steps.append).state_dict()
    assert steps == [5, 6]  # only the unfinished steps ran
    for name in whole:
        torch.testing.assert_close(resumed[name], whole[name], rtol=0, atol=0)
    # a checkpoint made for other inputs (another key) is not resumed
    steps.clear()
    train(checkpoint=checkpoint, key="other", on_step=steps.append)
    assert steps == [1, 2, 3, 4, 5, 6]


def test_training_learns_and_scores_with_the_datasets_metric():
    source = _source(n_per_class=12)
    fit = np.flatnonzero(source.predefined == "train")
    test = np.flatnonzero(source.predefined == "test")
    config = sweep.SweepConfig(steps=30, batch_size=8, augment=False, threads=1)
    backbone = _backbone()
    before = {k: v.clone() for k, v in backbone.module.state_dict().items()}
    module = sweep.train(backbone, source, fit, learning_rate=0.1, weight_decay=0.0, seed=0, config=config)
    assert sweep.score(module, backbone, source, test, config) == 1.0  # two well-separated colours
    for name, value in backbone.module.state_dict().items():  # the pretrained backbone is untouched
        torch.testing.assert_close(value, before[name], rtol=0, atol=0)


def test_multilabel_training_ignores_difficult_labels_and_reports_map():
    source = _source(n_per_class=12, multilabel=True)
    targets = torch.tensor([[1.0, -1.0], [0.0, 1.0]])
    logits = torch.tensor([[2.0, 5.0], [-1.0, 0.5]])
    changed = torch.tensor([[2.0, -9.0], [-1.0, 0.5]])  # only the ignored entry differs
    assert sweep._loss(logits, targets) == sweep._loss(changed, targets)
    fit = np.flatnonzero(source.predefined == "train")
    test = np.flatnonzero(source.predefined == "test")
    config = sweep.SweepConfig(steps=30, batch_size=8, augment=False, threads=1)
    backbone = _backbone()
    module = sweep.train(backbone, source, fit, learning_rate=0.1, weight_decay=0.0, seed=0, config=config)
    outputs = sweep.predict(module, backbone, source, test, config)
    assert outputs.shape == (2, 2) and ((outputs >= 0) & (outputs <= 1)).all()  # sigmoid
    assert sweep.score(module, backbone, source, test, config) == 1.0


def test_batches_from_worker_processes_come_back_in_order():
    from pedlib.data.loader import chunk, iter_batches

    source = _source(n_per_class=9)
    batches = chunk(np.arange(len(source))[::-1], 4)
    inline = list(iter_batches(source, batches))
    workers = list(iter_batches(source, batches, workers=2))
    assert len(inline) == len(workers) == 5
    for a, b in zip(inline, workers):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="workers must be >= 0"):
        list(iter_batches(source, batches, workers=-1))
