"""Records: content keys, atomic writes, freshness and provenance."""

import json

import numpy as np
import pandas as pd
import pytest

from pedlib import records


def test_content_key_ignores_dict_order_and_sees_values():
    assert records.content_key({"a": 1, "b": [1, 2]}) == records.content_key({"b": [1, 2], "a": 1})
    assert records.content_key({"a": 1}) != records.content_key({"a": 2})
    assert records.content_key(np.arange(3)) == records.content_key([0, 1, 2])


def test_atomic_write_leaves_old_file_intact_when_writer_fails(tmp_path):
    path = tmp_path / "table.csv"
    path.write_text("old")

    def crash(tmp):
        tmp.write_text("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        records.atomic_write(path, crash)
    assert path.read_text() == "old"
    assert list(tmp_path.iterdir()) == [path]  # no temporary left behind


def test_freshness_needs_payload_and_matching_record(tmp_path):
    path = tmp_path / "x.npz"
    records.save_npz(path, a=np.arange(4))
    assert not records.is_fresh(path, "k")  # payload without record: recompute
    records.write_record(path, "k", params={"p": 1}, seed=3)
    assert records.is_fresh(path, "k") and not records.is_fresh(path, "other")
    assert np.array_equal(records.load_npz(path)["a"], np.arange(4))
    path.unlink()
    assert not records.is_fresh(path, "k")


def test_record_carries_provenance(tmp_path):
    path = tmp_path / "t.csv"
    records.write_csv(pd.DataFrame({"x": [0.1 + 0.2]}), path)
    records.write_record(path, "key", params={"metric": "logme"}, seed=7)
    record = json.loads(records.record_path(path).read_text())
    assert record["seed"] == 7 and record["params"] == {"metric": "logme"}
    assert {"numpy", "torch", "scikit-learn", "pedlib", "python"} <= set(record["versions"])
    assert "commit" in record["git"] and record["created"]
    import torch

    # the CPU arithmetic that decides float32 last bits: results are bit-stable per machine
    assert record["cpu"]["torch"] == torch.backends.cpu.get_cpu_capability()
    assert record["cpu"]["blas"] and all(":" in entry for entry in record["cpu"]["blas"])  # api:kernels
    assert pd.read_csv(path).x[0] == 0.1 + 0.2  # full precision


KEYS = """
import json, sys
from pedlib.study import Study
print(json.dumps({study: Study.load(study, progress=False).stage_keys() for study in sys.argv[1:]}))
"""


def test_every_stage_key_is_the_same_under_any_hash_seed(tmp_path):
    """Content keys must not depend on set or dict order: computed in fresh interpreters under
    two PYTHONHASHSEEDs, every key of every stage of the pocket and smoke studies agrees."""
    import json
    import os
    import subprocess
    import sys

    from conftest import HAVE_ASSETS, ROOT

    if not HAVE_ASSETS:
        pytest.skip("../shared/assets not present")
    script = tmp_path / "keys.py"
    script.write_text(KEYS)
    outputs = []
    for seed in ("0", "5"):
        env = dict(os.environ, PYTHONHASHSEED=seed)
        done = subprocess.run([sys.executable, str(script), "pocket", "smoke"], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
        outputs.append(json.loads(done.stdout))
    first, second = outputs
    assert first == second
    assert len(first["pocket"]) > 300  # features, probe, ports, 85 score cells, 85 fine-tuning jobs


def test_content_keys_canonicalise_sets_and_refuse_what_has_no_canonical_form():
    from dataclasses import dataclass

    from pedlib import records

    assert records.content_key({"b", "a", "c"}) == records.content_key({"c", "a", "b"})
    assert records.content_key({"x": 1, "y": 2}) == records.content_key({"y": 2, "x": 1})

    @dataclass(frozen=True)
    class Settings:
        steps: int
        rates: tuple

    assert records.content_key(Settings(3, (0.1,))) == records.content_key({"steps": 3, "rates": [0.1]})
    with pytest.raises(TypeError, match="has no canonical form"):
        records.content_key(object())
