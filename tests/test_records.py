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
    assert pd.read_csv(path).x[0] == 0.1 + 0.2  # full precision


def test_code_version_follows_the_source():
    assert records.code_version("ped") != records.code_version("metrics")
    with pytest.raises(ValueError, match="no pedlib module"):
        records.code_version("nonexistent")
