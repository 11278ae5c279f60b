"""Decoding and extraction paths: torchvision's batched JPEG decoding (what CUDA uses, run on
the CPU here) against the PIL path, and decode-once extraction against per-model extraction."""

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from pedlib import data
from pedlib.data import jpeg
from pedlib.data.images import decode
from pedlib.data.jpeg import decode_files, iter_decoded
from pedlib.features import cached_features
from pedlib.stages import extract as extract_stage, feature_store
from pedlib.study import Study

from conftest import ROOT, needs_assets


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """500x375 JPEGs with gradients and noise (like photos: resizing matters), a PNG."""
    folder = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:375, 0:500]
    paths = []
    for i in range(5):
        image = np.stack([(xx * (i + 1)) % 256, (yy * 2 + 40 * i) % 256, ((xx + yy) // 3) % 256], -1)
        image = np.clip(image + rng.normal(0, 12, image.shape), 0, 255).astype(np.uint8)
        paths.append(folder / f"{i}.jpg")
        Image.fromarray(image).save(paths[-1], quality=90)
    Image.fromarray(image[:300, :200]).save(folder / "tall.png")  # not a JPEG: PIL fallback
    return paths + [folder / "tall.png"]


@pytest.mark.parametrize("channels", [3, 1])
def test_torchvision_decoding_equals_the_pil_path_within_one_grey_level(photos, channels):
    pil = np.stack([decode(p, 224, channels) for p in photos])
    torch_images, fallbacks = decode_files([str(p) for p in photos], 224, channels, device="cpu")
    assert fallbacks == 1  # the PNG
    assert tuple(torch_images.shape) == pil.shape == (6, 224, 224, channels)
    difference = np.abs(torch_images.numpy().astype(int) - pil.astype(int))
    assert difference.max() <= 1 and difference.mean() < 0.3  # resampler rounding only


def test_a_corrupt_jpeg_falls_back_to_pil_which_names_it(photos, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(photos[0].read_bytes()[:200])  # a JPEG header, then nothing
    with pytest.raises(OSError):
        decode_files([str(photos[0]), str(broken)], 64, 3)
    good, fallbacks = decode_files([str(photos[0])], 64, 3)
    assert fallbacks == 0 and tuple(good.shape) == (1, 64, 64, 3)


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory):
    """An ImageFolder of 11 small JPEGs in two classes and one PNG (the PIL fallback)."""
    root = tmp_path_factory.mktemp("folder")
    rng = np.random.default_rng(1)
    for i in range(12):
        (root / f"c{i % 2}").mkdir(exist_ok=True)
        image = rng.integers(0, 256, size=(40 + i, 50, 3), dtype=np.uint8)
        Image.fromarray(image).save(root / f"c{i % 2}" / (f"{i:02d}.png" if i == 7 else f"{i:02d}.jpg"))
    return data.create("imagefolder", root=root, size=32)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torchvision 0.29's decoders (pedlib.data.jpeg)
@pytest.mark.parametrize("channels", [3, 1])
def test_same_sized_images_are_resized_together_with_the_bytes_of_one_at_a_time(photos, channels, monkeypatch):
    from torchvision.io import decode_jpeg, read_file

    rng = np.random.default_rng(2)
    decoded = [decode_jpeg(read_file(str(p))) for p in photos[:5]]  # 500 x 375
    decoded += [torch.from_numpy(rng.integers(0, 256, (3, 40 + i % 2, 60), dtype=np.uint8)) for i in range(4)]
    decoded.insert(3, None)  # a file the decoder refused
    together = jpeg._resized(decoded, 32, channels)
    monkeypatch.setattr(jpeg, "_RESIZE_BYTES", 2 * 4 * 3 * 375 * 500)  # two photos per call
    assert all(a is b is None or torch.equal(a, b) for a, b in zip(jpeg._resized(decoded, 32, channels), together))
    assert together[3] is None
    for image, got in zip(decoded, together):
        if image is not None:
            one = jpeg._resize_crop((image if channels == 3 else jpeg._luma(image))[None], 32)[0]
            assert got.shape == (channels, 32, 32) and torch.equal(got, one)


def test_iter_decoded_yields_each_batch_decoded_in_order(photo_folder):
    batches = [np.array(b) for b in ([0, 1, 2, 3, 4], [5, 6, 7, 8], [9], [10, 11])]
    decoded = list(iter_decoded(photo_folder, batches, device="cpu"))
    assert [len(b) for b in decoded] == [5, 4, 1, 2]
    for got, batch in zip(decoded, batches):
        expected, _ = jpeg.decode_files([photo_folder.files[i] for i in batch], photo_folder.loader.size,
                                        photo_folder.channels, device="cpu")
        assert torch.equal(got, expected)


@needs_assets
def test_decode_once_extraction_equals_per_model_extraction(tmp_path):
    """Study.extract decodes each (dataset, split) once for every model; each model's features
    must be exactly what extracting it alone gives (same batches, same arithmetic)."""
    (tmp_path / "params").mkdir()
    raw = yaml.safe_load((ROOT / "params" / "smoke.yaml").read_text())
    raw["models"] = ["mobilenet_v1_0.25_128", "mlperf_resnet8", "lenet5_clean"]
    (tmp_path / "params" / "smoke.yaml").write_text(yaml.safe_dump(raw))
    study = Study.load(tmp_path / "params" / "smoke.yaml", progress=False)
    with pytest.warns(UserWarning) as caught:
        summary = study.extract(parts=("train",))
    assert not summary.cached.any() and len(summary) == 3 * len(study.datasets)
    # the port check's one line for every port below the top-1 bar of a quantized original
    ports_lines = [str(w.message) for w in caught if "port" in str(w.message)]
    assert len(ports_lines) == 1 and ports_lines[0].startswith(
        "ports: 1 of 2 agree with their quantized originals on fewer than 90% of top-1 predictions (lowest 0.")
    assert ports_lines[0].endswith("mobilenet_v1_0.25_128) while their features agree: quantization moves "
                                   "near-tied logits, the ports are right (docs/study.md, \"The ports' check\"; "
                                   "figures/smoke/ports.md)")
    for model in study.models:
        for dataset in study.datasets:
            shared = study.features(model, dataset, "train")
            alone, computed = cached_features(
                tmp_path / "alone" / f"{model}-{dataset}.npz", study.spec(model), study.source(dataset),
                study.indices(dataset, "train"), backbone=lambda m=model: study.backbone(m),
                images=lambda d=dataset: extract_stage._batches(study, d, study.indices(d, "train")),
                batch_size=study.params.extract.batch_size, progress=False)
            assert computed and np.array_equal(shared["features"], alone["features"]), (model, dataset)
    assert study.extract(parts=("train",)).cached.all()  # nothing decoded the second time


class _MeanColour:
    """A stand-in backbone: per-image mean of each channel (a real spec's cache key)."""

    def __init__(self, spec):
        self.spec = spec

    def features_of(self, images):
        return np.asarray(images, dtype=np.float32).mean(axis=(1, 2))

    def finish(self, chunks):
        return np.concatenate(chunks)


def test_an_interrupted_shared_extraction_resumes_on_the_same_batches(tmp_path):
    from pedlib.data import ImageSource
    from pedlib.features import ExtractionInterrupted, extract_shared
    from pedlib.models import get_spec

    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 255, size=(50, 8, 8, 3), dtype=np.uint8)
    source = ImageSource("toy", np.arange(50) % 2, ("a", "b"), lambda idx: pixels[idx], 3, "toy-1")
    jobs = [(tmp_path / f"{m}.npz", _MeanColour(get_spec(m))) for m in ("lenet5_clean", "cifar_resnet20")]
    seen = []

    def batches(indices, stop_after=None):
        seen.append(int(indices[0]))
        for n, start in enumerate(range(0, len(indices), 8)):
            if n == stop_after:
                raise KeyboardInterrupt
            yield source.load(indices[start:start + 8])

    with pytest.raises(ExtractionInterrupted, match=r"interrupted after 24/50 images of toy"):
        extract_shared(jobs, source, np.arange(50), lambda idx: batches(idx, stop_after=3), batch_size=8,
                       progress=False)
    assert not jobs[0][0].exists() and (tmp_path / "lenet5_clean.npz.partial.npz").exists()
    resumed = extract_shared(jobs, source, np.arange(50), batches, batch_size=8, progress=False)
    assert seen == [0, 24]  # the rerun decoded only the images after the 24 saved
    whole = extract_shared([(tmp_path / "whole.npz", jobs[0][1])], source, np.arange(50), batches,
                           batch_size=8, progress=False)
    np.testing.assert_array_equal(resumed[0]["features"], whole[0]["features"])
    assert not (tmp_path / "lenet5_clean.npz.partial.npz").exists()


@needs_assets
def test_parallel_extraction_hands_out_the_largest_groups_first_and_keeps_each_groups_time(tmp_path, monkeypatch):
    """Worker processes take groups in submission order: the largest (images to compute x
    input pixels of its models) go first, so that no process is left alone with a long one at
    the end; the reference groups come after the split groups and each is handed out once its
    target's splits are done (it takes features from them); each row still gets its own
    group's seconds."""
    (tmp_path / "params").mkdir()
    raw = yaml.safe_load((ROOT / "params" / "smoke.yaml").read_text())
    raw["models"] = ["mobilenet_v1_0.25_128", "lenet5_clean"]
    raw["extract"] = {"batch_size": 32, "threads": 1, "parallel": True}
    (tmp_path / "params" / "smoke.yaml").write_text(yaml.safe_dump(raw))
    study = Study.load(tmp_path / "params" / "smoke.yaml", progress=False)
    submitted, waits, pool_map = [], [], study.map

    def in_order(function, jobs, **options):  # the pool's queue of groups, run here in its order
        if function is not extract_stage.extract_group:
            return pool_map(function, jobs, **options)
        before = len(submitted)
        submitted.extend(jobs)
        waits.extend(options.get("after") or [[] for _ in jobs])
        return [function(study, *job) * 0 + position for position, job in enumerate(jobs, before + 1)]

    monkeypatch.setattr(study, "map", in_order)
    summary = study.extract()
    pixels = {"mobilenet_v1_0.25_128": 128 ** 2, "lenet5_clean": 28 ** 2}

    def images(dataset, part):  # a reference group computes only the images outside the splits
        taken = feature_store.in_splits(study, dataset) if part == "reference" else {}
        return len(study.indices(dataset, part)) - sum(len(positions) for positions, _ in taken.values())

    work = [images(d, p) * sum(pixels[m] for m in models) for d, p, models in submitted]
    groups = {(dataset, part) for _, dataset, part in feature_store.feature_jobs(study)}
    assert sorted((d, p) for d, p, _ in submitted) == sorted(groups)
    assert {p for _, p in groups} == {"train", "test", "reference"}
    splits = sum(p != "reference" for _, p, _ in submitted)
    assert all(p != "reference" for _, p, _ in submitted[:splits])  # the splits first
    for phase in (work[:splits], work[splits:]):
        assert phase == sorted(phase, reverse=True)
    assert work[0] > work[splits - 1]
    for (dataset, part, _), wait_for in zip(submitted, waits):  # a reference group: after its target's splits
        expected = {(dataset, "train"), (dataset, "test")} if part == "reference" and dataset in study.datasets else set()
        assert {submitted[i][:2] for i in wait_for} == expected
    for position, (dataset, part, models) in enumerate(submitted, 1):
        rows = summary[(summary.dataset == dataset) & (summary.part == part)]
        assert sorted(rows.model) == sorted(models) and (rows.seconds == position).all()


@needs_assets
def test_the_linear_probe_stage_extracts_every_feature_set_in_its_one_pass(tmp_path):
    """The linear probe needs only train and test features, but the runner runs the whole
    extract stage before it (the study's reference samples join the same queue): stage 02 then
    finds everything cached."""
    from pedlib import pipeline, records

    (tmp_path / "params").mkdir()
    raw = yaml.safe_load((ROOT / "params" / "smoke.yaml").read_text())
    raw["models"] = ["mlperf_resnet8", "lenet5_clean"]
    (tmp_path / "params" / "smoke.yaml").write_text(yaml.safe_dump(raw))
    study = Study.load(tmp_path / "params" / "smoke.yaml", progress=False)
    pipeline.run(study, "linear_probe")
    jobs = feature_store.feature_jobs(study)
    assert any(part == "reference" for _, _, part in jobs)
    assert all(records.is_fresh(feature_store.feature_path(study, *job), feature_store.key(study, *job))
               for job in jobs)
    assert study.extract().cached.all()


@needs_assets
def test_reference_samples_in_the_splits_are_taken_from_their_features_not_computed_again(tmp_path, monkeypatch):
    """A target's reference samples that lie in its train or test split get those files'
    features; only the others are decoded. The file equals a separate pass over all of them
    bit for bit (features do not depend on the batch) and its key names the split files. A
    model's own source data (not a target here) is computed whole."""
    from pedlib import records
    from pedlib.features import extract_shared, feature_key

    (tmp_path / "params").mkdir()
    raw = yaml.safe_load((ROOT / "params" / "smoke.yaml").read_text())
    raw["models"] = ["mobilenet_v1_0.25_128", "lenet5_clean"]  # other targets; MNIST (not a target)
    raw["extract"] = {"batch_size": 16, "threads": 1, "parallel": False}
    (tmp_path / "params" / "smoke.yaml").write_text(yaml.safe_dump(raw))
    study = Study.load(tmp_path / "params" / "smoke.yaml", progress=False)
    decoded = []
    batches = extract_stage._batches
    monkeypatch.setattr(extract_stage, "_batches", lambda s, dataset, indices:
                        decoded.append((dataset, indices.tolist())) or batches(s, dataset, indices))
    study.extract()
    references = [(m, d) for m, d, part in feature_store.feature_jobs(study) if part == "reference"]
    assert {d for _, d in references} == {"lfw", "digits", "mnist5k"}
    for model, dataset in references:
        reference = study.indices(dataset, "reference")
        splits = [study.indices(dataset, p) for p in ("train", "test")] if dataset in study.datasets else []
        in_splits = np.isin(reference, np.concatenate(splits)) if splits else np.zeros(len(reference), bool)
        assert (0 < in_splits.sum() < len(reference)) == (dataset != "mnist5k"), dataset  # both kinds
        record = records.read_record(feature_store.feature_path(study, model, dataset, "reference"))
        assert record.get("gathered", 0) == in_splits.sum()
        base = feature_key(study.spec(model), study.source(dataset), reference)
        assert (record["key"] == base) == (dataset == "mnist5k")
        alone = extract_shared([(tmp_path / "alone" / f"{model}-{dataset}.npz", study.backbone(model))],
                               study.source(dataset), reference, lambda i, d=dataset: batches(study, d, i),
                               batch_size=16, progress=False)[0]
        np.testing.assert_array_equal(study.features(model, dataset, "reference")["features"], alone["features"])
    def outside(dataset):
        reference = study.indices(dataset, "reference")
        if dataset not in study.datasets:
            return reference.tolist()
        return reference[~np.isin(reference, np.concatenate([study.indices(dataset, p) for p in ("train", "test")]))].tolist()

    # one decode per group: the four splits, then each reference group's images outside the splits
    assert sorted(d for d, _ in decoded[:4]) == ["digits", "digits", "lfw", "lfw"]
    assert decoded[4:] == [(d, outside(d)) for d in ("digits", "lfw", "mnist5k")]
    keys = {m: feature_store.key(study, m, "lfw", "reference") for m in study.models}
    raw["datasets"]["lfw"]["train_per_class"] = 20  # another split: other features to take
    (tmp_path / "params" / "smoke.yaml").write_text(yaml.safe_dump(raw))
    changed = Study.load(tmp_path / "params" / "smoke.yaml", progress=False)
    assert all(feature_store.key(changed, m, "lfw", "reference") != keys[m] for m in study.models)


def test_extraction_batches_never_leave_fewer_than_four_images_for_the_last():
    from pedlib.models import MIN_BATCH, extraction_batches

    assert MIN_BATCH == 4
    sizes = {n: [len(b) for b in extraction_batches(np.arange(n), 64)] for n in (0, 2, 64, 67, 68, 128, 131)}
    assert sizes == {0: [], 2: [2], 64: [64], 67: [67], 68: [64, 4], 128: [64, 64], 131: [64, 67]}
    assert [len(b) for b in extraction_batches(np.arange(5), 2)] == [2, 3]  # small batches: no batch of 1
    indices = np.array([9, 3, 7, 1, 5, 2, 8])
    np.testing.assert_array_equal(np.concatenate(extraction_batches(indices, 3)), indices)  # order kept
    with pytest.raises(ValueError, match="batch_size must be positive"):
        extraction_batches(indices, 0)
