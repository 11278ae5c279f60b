"""Paper studies' models: the registry, and SSL checkpoints in each published layout."""

import pytest
import torch
import torchvision

import fakes
from pedlib import models
from pedlib.models.paper import SSL_MODELS, SUPERVISED_MODELS, load_ssl_resnet50, ssl_checkpoint_path


def test_paper_zoos_have_the_papers_models():
    assert set(models.list_models(zoo="paper-ssl")) == {
        "byol", "deepcluster-v2", "infomin", "insdis", "moco-v1", "moco-v2", "pcl-v1", "pcl-v2",
        "sela-v2", "simclr-v1", "simclr-v2", "swav"}
    assert models.list_models(zoo="paper-supervised") == list(SUPERVISED_MODELS)
    assert models.get_spec("inception_v3").input_size == 299


@pytest.fixture(scope="module")
def resnet_state():
    torch.manual_seed(0)
    net = torchvision.models.resnet50()
    return net.state_dict()


def _probe(net):
    net.eval()
    with torch.no_grad():
        return net(torch.ones(1, 3, 64, 64))


@pytest.mark.parametrize("layout", ["moco", "swav", "resnet", "encoder", "plain"])
def test_ssl_checkpoint_layouts_load_the_same_backbone(resnet_state, tmp_path, layout):
    checkpoint = fakes.ssl_checkpoint(resnet_state, layout)
    path = tmp_path / f"{layout}.pth"
    torch.save(checkpoint, path)
    net = load_ssl_resnet50(path)
    reference = torchvision.models.resnet50()
    reference.load_state_dict(resnet_state)
    reference.fc = torch.nn.Identity()
    assert torch.allclose(_probe(net), _probe(reference))


def test_ssl_checkpoint_is_never_loaded_partially(resnet_state, tmp_path):
    partial = {f"module.{k}": v for k, v in resnet_state.items() if not k.startswith("layer4")}
    torch.save({"state_dict": partial}, tmp_path / "partial.pth")
    with pytest.raises(ValueError, match=r"missing \d+ keys \['layer4"):
        load_ssl_resnet50(tmp_path / "partial.pth")
    extra = {f"module.{k}": v for k, v in resnet_state.items()}
    extra["module.layer5.weight"] = torch.zeros(1)
    torch.save(extra, tmp_path / "extra.pth")
    with pytest.raises(ValueError, match=r"unmatched 1 keys \['module.layer5.weight'\]"):
        load_ssl_resnet50(tmp_path / "extra.pth")


def test_missing_ssl_checkpoint_names_the_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("PEDLIB_MODELS", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="needs a conversion.*byol.pth"):
        ssl_checkpoint_path("byol")
    with pytest.raises(FileNotFoundError, match="download disabled"):
        ssl_checkpoint_path("swav", download=False)
    (tmp_path / "swav.pth").write_bytes(b"x")
    assert ssl_checkpoint_path("swav") == tmp_path / "swav.pth"
    assert SSL_MODELS["moco-v2"].startswith("https://")


def test_params_published_is_a_faithful_copy_of_the_papers_numbers():
    from conftest import ROOT

    shared = ROOT.parent / "shared" / "published"
    if not shared.exists():
        pytest.skip("../shared/published not present")
    for original in shared.rglob("*"):
        if original.is_file():
            copy = ROOT / "params" / "published" / original.relative_to(shared)
            assert copy.read_bytes() == original.read_bytes(), copy


def test_published_accuracies_load_long():
    from conftest import ROOT
    from pedlib.groundtruth.published import load_published_accuracies, load_published_wtau

    table = load_published_accuracies(ROOT / "params" / "published" / "finetune_ssl_resnet50.csv")
    assert len(table) == 11 * 12 and set(table.model) == set(SSL_MODELS)
    row = table[(table.model == "byol") & (table.dataset == "aircraft")]
    assert row.accuracy.iloc[0] == 82.1
    wtau = load_published_wtau(ROOT / "params" / "published" / "wtau_ped_paper_ssl.csv")
    assert wtau[(wtau.method == "logme+ped") & (wtau.dataset == "cifar100")].weighted_tau.iloc[0] == 0.667
