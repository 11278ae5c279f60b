"""Params files: the committed studies parse; malformed ones fail early with a clear message."""

import copy

import pytest
import yaml

from pedlib.params import ParamsError, load_params, parse_params

from conftest import ROOT

BASE = {"study": "t", "datasets": {"digits": {}}, "models": ["lenet5_clean", "cifar_resnet20"]}


@pytest.mark.parametrize("study", sorted(p.stem for p in (ROOT / "params").glob("*.yaml")))
def test_committed_params_files_are_valid(study):
    params = load_params(ROOT / "params" / f"{study}.yaml")
    assert params.study == study
    assert params.output_dir == ROOT / "results" / study


def _with(**changes):
    raw = copy.deepcopy(BASE)
    for dotted, value in changes.items():
        target = raw
        *parents, last = dotted.split("__")
        for key in parents:
            target = target.setdefault(key, {})
        target[last] = value
    return raw


@pytest.mark.parametrize("changes, message", [
    ({"metrix": ["logme"]}, "unknown key 'metrix'; did you mean 'metrics'"),
    ({"reference__mdoe": "others"}, "unknown key 'mdoe'; did you mean 'mode'"),
    ({"groundtruth__linear_probe__Cz": [1.0]}, r"groundtruth.linear_probe: unknown key 'Cz'; did you mean 'Cs'\? "
                                               r"\(valid keys: Cs, folds, max_iter, threads\)$"),
    ({"groundtruth__linear_probe__tolerance": 1}, r"unknown key 'tolerance' \(valid keys: Cs, folds, max_iter, "
                                                  r"threads\)$"),
    ({"reference__mode": "sorce"}, "'sorce' is not one of .*did you mean 'source'"),
    ({"models": ["lenet5_clen"]}, "unknown model 'lenet5_clen'; did you mean 'lenet5_clean'"),
    ({"datasets": {"flower12": {}}}, "unknown dataset 'flower12'; did you mean 'flowers12'"),
    ({"metrics": ["logme", "leep"]}, "unknown metric 'leep'"),
    ({"ped": {"nsgima": 1.0}}, "unknown PED option 'nsgima'; did you mean 'nsigma'"),
    ({"seed": "zero"}, "seed: expected an integer"),
    ({"datasets__digits__train_per_class": 1}, "train_per_class must be at least 2"),
    ({"groundtruth__finetune__models": ["mobilenet_v2_1.0_22"]}, "unknown model 'mobilenet_v2_1.0_22'"),
    ({"groundtruth__finetune__steps": 1.5}, "steps: expected an integer"),
    ({"datasets": {}}, "at least one target dataset"),
])
def test_malformed_params_name_the_problem(changes, message):
    with pytest.raises(ParamsError, match=message):
        parse_params(_with(**changes))


def test_missing_file_and_bad_yaml(tmp_path):
    (tmp_path / "params").mkdir()
    (tmp_path / "params" / "good.yaml").write_text(yaml.safe_dump(BASE))
    with pytest.raises(ParamsError, match="does not exist; studies in .*: good"):
        load_params(tmp_path / "params" / "nope.yaml")
    (tmp_path / "params" / "bad.yaml").write_text("study: [unclosed\n")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(tmp_path / "params" / "bad.yaml")
    params = load_params(tmp_path / "params" / "good.yaml")
    assert params.output_dir == tmp_path / "results" / "t"


def test_null_switches_an_optional_section_off():
    params = load_params(ROOT / "params" / "paper-ssl.yaml")
    assert params.sensitivity is None  # `sensitivity: null`, not the default grid
    assert params.groundtruth.finetune.protocol == "sweep"
    assert params.groundtruth.finetune.learning_rates == (1e-4, 1e-3, 1e-2, 1e-1)


def test_a_datasets_own_root_is_accepted_but_the_studys_root_is_not():
    """`datasets.<name>.root` names a user's image folder (README); the study's own `root` is
    where its params file was found and cannot be written in the file."""
    from pedlib.params import ParamsError, parse_params

    params = parse_params({"study": "x", "models": ["lenet5_clean"],
                           "datasets": {"mine": {"type": "imagefolder", "root": "photos"}}})
    assert params.datasets["mine"].root == "photos"
    with pytest.raises(ParamsError, match="unknown key 'root'"):
        parse_params({"study": "x", "root": "/elsewhere", "datasets": {"digits": {}}})


def test_a_misspelt_study_name_gets_a_did_you_mean(monkeypatch):
    from pedlib.study import find_params

    monkeypatch.chdir(ROOT)
    with pytest.raises(ParamsError, match=r"no study 'pockett'.*did you mean 'pocket'\?"):
        find_params("pockett")


def test_a_nested_typo_names_the_file_once_then_the_key_path_without_type_noise(tmp_path):
    raw = yaml.safe_load((ROOT / "params" / "pocket.yaml").read_text())
    raw["sensitivity"]["nsigam"] = raw["sensitivity"].pop("nsigma")
    path = tmp_path / "typo.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ParamsError) as error:
        load_params(path)
    message = str(error.value)
    assert message.startswith(f"{path}: sensitivity: unknown key 'nsigam'; did you mean 'nsigma'?")
    assert "accepted forms" not in message and "expected null" not in message and "\n" not in message
