"""Assets resolve from a local mirror, else a verified download into the cache, else a clear error."""

import hashlib
import shutil
from pathlib import Path

import pytest

from pedlib import assets

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "assets"
needs_shared = pytest.mark.skipif(not (SHARED / "MANIFEST.tsv").exists(), reason="../shared/assets not present")


def test_project_manifest_equals_the_shared_manifest():
    if not (SHARED / "MANIFEST.tsv").exists():
        pytest.skip("../shared/assets not present")
    ours = (Path(assets.__file__).parent / "assets_manifest.tsv").read_text()
    assert ours == (SHARED / "MANIFEST.tsv").read_text()


@needs_shared
@pytest.mark.parametrize("name", ["models/cifar10_resnet20.th", "data/mnist_5k.csv.gz", "data/flowers12"])
def test_resolve_from_the_local_mirror_checks_the_checksum(name, tmp_path):
    path = assets.resolve(name, mirror=SHARED, cache=tmp_path, download=False)
    assert path == SHARED / name


def test_tree_hash_by_hand(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / "a.txt").write_bytes(b"x")
    (tmp_path / "b" / "c.txt").write_bytes(b"yz")
    digest = hashlib.sha256(b"a.txt" + hashlib.sha256(b"x").digest()
                            + b"b/c.txt" + hashlib.sha256(b"yz").digest()).hexdigest()
    assert assets.tree_sha256(tmp_path) == "tree:" + digest


@needs_shared
def test_corrupt_mirror_file_is_reported_with_both_checksums(tmp_path):
    mirror = tmp_path / "mirror"
    (mirror / "models").mkdir(parents=True)
    (mirror / "models" / "cifar10_resnet20.th").write_bytes(b"not a model")
    with pytest.raises(assets.AssetError, match="checksum mismatch.*expected 12fca82f"):
        assets.resolve("models/cifar10_resnet20.th", mirror=mirror, cache=tmp_path / "cache", download=False)


def test_missing_asset_names_both_ways_to_provide_it(tmp_path):
    with pytest.raises(assets.AssetError, match="PEDLIB_ASSETS.*downloading it from https://"):
        assets.resolve("models/cifar10_resnet20.th", mirror=tmp_path, cache=tmp_path / "c", download=False)


def test_a_missing_assets_message_is_complete_in_itself(tmp_path):
    """The manifest says "as above, ResNet-56" for the CIFAR ResNets after the first: the
    message spells out what the file is, with no "above" to look for."""
    with pytest.raises(assets.AssetError) as raised:
        assets.resolve("models/cifar10_resnet56.th", mirror=tmp_path, cache=tmp_path / "c", download=False)
    message = str(raised.value)
    assert message.startswith("asset 'models/cifar10_resnet56.th' (ResNet-56; otherwise as "
                              "models/cifar10_resnet20.th: CIFAR-10 supervised ResNet-20 (He et al. 2016")
    assert "as above" not in message and "\n" not in message


def test_asset_without_download_url_still_names_both_ways(tmp_path):
    with pytest.raises(assets.AssetError, match="not a downloadable URL.*PEDLIB_ASSETS.*skimage"):
        assets.resolve("data/lfw_subset.npy", mirror=tmp_path, cache=tmp_path / "c")


def test_unknown_asset_lists_close_matches():
    with pytest.raises(assets.AssetError, match="did you mean.*cifar10_resnet20"):
        assets.resolve("models/cifar10_resnet2")


@needs_shared
def test_download_fills_the_cache_and_checks_the_hash(tmp_path):
    name = "models/cifar10_resnet20.th"
    calls = []

    def copy_from_shared(url, output_file, pooch_instance):  # a pooch downloader without network
        calls.append(url)
        shutil.copyfile(SHARED / name, output_file)

    path = assets.resolve(name, mirror=tmp_path / "empty", cache=tmp_path / "cache", downloader=copy_from_shared)
    assert path == tmp_path / "cache" / name and path.exists()
    assert calls == [assets.manifest()[name].url]
    # Second call: served from the cache, no download.
    assets.resolve(name, mirror=tmp_path / "empty", cache=tmp_path / "cache", downloader=copy_from_shared)
    assert len(calls) == 1


@needs_shared
def test_download_with_wrong_content_is_rejected_and_not_cached(tmp_path):
    def corrupt(url, output_file, pooch_instance):
        Path(output_file).write_bytes(b"tampered")

    with pytest.raises(assets.AssetError, match="Download failed"):
        assets.resolve("models/cifar10_resnet20.th", mirror=tmp_path, cache=tmp_path / "cache", downloader=corrupt)
    assert not (tmp_path / "cache" / "models" / "cifar10_resnet20.th").exists()


@needs_shared
def test_folder_asset_downloads_as_repository_archive_and_checks_tree_hash(tmp_path):
    import tarfile

    name = "data/flowers12"
    archive = tmp_path / "archive.tar.gz"
    with tarfile.open(archive, "w:gz") as bundle:  # the layout GitHub's archive endpoint serves
        bundle.add(SHARED / name, arcname="Machine-Learning-Class-35496a1/lab3/flowers")

    def serve_archive(url, output_file, pooch_instance):
        assert url.endswith("/archive/35496a1435a27a0818a486fbe6472e7b4325f983.tar.gz")
        shutil.copyfile(archive, output_file)

    path = assets.resolve(name, mirror=tmp_path / "empty", cache=tmp_path / "cache", downloader=serve_archive)
    assert assets.tree_sha256(path) == assets.manifest()[name].sha256


def test_import_pedlib_gives_its_submodules():
    import subprocess
    import sys

    code = "import pedlib; pedlib.assets.resolve; pedlib.study.Study; pedlib.rank.rank_models"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]


def test_an_unreachable_download_fails_quietly_with_the_resolve_error_and_leaves_no_folders(tmp_path, capfd):
    def offline(url, output_file, pooch_instance):
        raise ConnectionError(f"cannot reach {url}")

    with pytest.raises(assets.AssetError, match=r"Download failed: ConnectionError.*PEDLIB_ASSETS"):
        assets.resolve("models/cifar10_resnet20.th", mirror=tmp_path / "empty", cache=tmp_path / "cache",
                       downloader=offline)
    printed = capfd.readouterr()
    assert "Downloading" not in printed.err + printed.out
    assert not (tmp_path / "cache").exists()
