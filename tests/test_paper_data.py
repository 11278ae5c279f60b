"""Paper datasets: each factory reads a tiny fake in its dataset's real on-disk layout."""

import numpy as np
import pytest

import fakes
from pedlib import data

CASES = ["aircraft", "dtd", "food", "pets", "cars", "cifar10_python", "cifar100_python", "flowers",
         "sun397", "voc2007"]


@pytest.mark.parametrize("name", CASES)
def test_paper_dataset_reads_its_real_layout(name, tmp_path):
    expected = getattr(fakes, name.removesuffix("_python"))(tmp_path)
    source = data.create(name, root=tmp_path, size=16)
    assert np.isin(source.predefined, ("train", "val")).sum() == expected["train"]
    assert (source.predefined == "test").sum() == expected["test"]
    assert (source.predefined == "val").sum() == expected.get("val", 0)
    assert (source.val is None) == ("val" not in expected)
    assert len(source.classes) == expected["classes"]
    if "labels" in expected:
        assert list(source.labels) == expected["labels"]
    else:  # the fakes' images are numbered class by class within each part
        assert np.bincount(source.labels).tolist() == [len(source) // expected["classes"]] * expected["classes"]
    images = source.load(np.arange(len(source)))
    assert images.shape == (len(source), 16, 16, 3) and images.dtype == np.uint8
    split = data.split(source, seed=0)
    assert len(split.train) == expected["train"] and len(split.test) == expected["test"]


def test_reported_metric_of_each_paper_dataset(tmp_path):
    wanted = {"aircraft": "mean_per_class", "pets": "mean_per_class", "flowers": "mean_per_class",
              "voc2007": "map11", "cars": "accuracy", "dtd": "accuracy", "food": "accuracy",
              "cifar10_python": "accuracy", "cifar100_python": "accuracy", "sun397": "accuracy"}
    for name, metric in wanted.items():
        getattr(fakes, name.removesuffix("_python"))(tmp_path / name)
        assert data.create(name, root=tmp_path / name, size=8).metric == metric, name


def test_voc2007_multilabels_mark_difficult_only_classes(tmp_path):
    expected = fakes.voc2007(tmp_path)
    source = data.create("voc2007", root=tmp_path, size=8)
    assert source.multilabels.dtype == np.int8 and source.multilabels.shape == (len(source), 20)
    np.testing.assert_array_equal(source.multilabels, expected["multilabels"])
    # the representative label is the largest non-difficult object, never the difficult one
    assert (source.multilabels[np.arange(len(source)), source.labels] == 1).all()


def test_caltech101_uses_the_published_split(tmp_path):
    expected = fakes.caltech101(tmp_path / "data", tmp_path / "split")
    source = data.create("caltech101", root=tmp_path / "data", split_dir=tmp_path / "split", size=8)
    assert (source.predefined == "train").sum() == expected["train"]  # duplicates kept
    assert source.classes == ("BACKGROUND_Google", "category001")
    assert source.metric == "mean_per_class"
    assert source.load([0, 1, 2]).shape == (3, 8, 8, 3)


def test_published_caltech_split_has_the_documented_size():
    from pedlib.data.paper import _PUBLISHED

    train = (_PUBLISHED / "caltech101_split" / "train.txt").read_text().strip().split("\n")
    test = (_PUBLISHED / "caltech101_split" / "test.txt").read_text().strip().split("\n")
    assert (len(train), len(test)) == (2416, 6728)


@pytest.mark.parametrize("name", CASES + ["caltech101", "imagenet"])
def test_missing_paper_dataset_says_where_and_how(name, tmp_path):
    with pytest.raises(FileNotFoundError, match="not found under .*PEDLIB_DATA"):
        data.create(name, root=tmp_path / "nothing")
