"""Bad input: every metric and PED give a clear ValueError or a documented behaviour."""

import numpy as np
import pytest

import pedlib
from conftest import make_blobs

FEATURE_METRICS = pedlib.metrics.available("features")
SMALL_OPTIONS = {"nleep": {"component_ratio": 1}}


def run(metric, x, y):
    return pedlib.metrics.get(metric)(x, y, **SMALL_OPTIONS.get(metric, {}))


@pytest.fixture
def data():
    return make_blobs(n_per_class=12, n_classes=3, n_features=5)


@pytest.mark.parametrize("metric", FEATURE_METRICS + ["ped"])
class TestFeatureMetrics:
    def call(self, metric, x, y):
        if metric == "ped":
            return pedlib.ped.decline(x, y).features
        return run(metric, x, y)

    def test_nan_or_inf_features_are_rejected(self, metric, data):
        x, y = data
        for bad in (np.nan, np.inf):
            x2 = x.copy()
            x2[3, 1] = bad
            with pytest.raises(ValueError, match="NaN or infinite"):
                self.call(metric, x2, y)

    def test_features_must_be_two_dimensional(self, metric, data):
        x, y = data
        with pytest.raises(ValueError, match="2-D"):
            self.call(metric, x[:, 0], y)
        with pytest.raises(ValueError, match="2-D"):
            self.call(metric, x[None], y)

    def test_length_mismatch_is_rejected(self, metric, data):
        x, y = data
        with pytest.raises(ValueError, match="entries but features has"):
            self.call(metric, x, y[:-1])

    def test_a_single_class_is_rejected(self, metric, data):
        x, _ = data
        with pytest.raises(ValueError, match="at least 2 classes"):
            self.call(metric, x, np.zeros(len(x), dtype=int))

    def test_string_and_noncontiguous_labels_give_the_same_result(self, metric, data):
        x, y = data
        expected = self.call(metric, x, y)
        for relabelled in (np.array(["cat", "dog", "emu"])[y], np.array([3, 17, 100])[y],
                           y.astype(float), list(y)):
            np.testing.assert_allclose(self.call(metric, x, relabelled), expected, rtol=1e-9)

    def test_relabelling_classes_changes_no_result(self, metric, data):
        x, y = data
        permuted = np.array([2, 0, 1])[y]
        np.testing.assert_allclose(self.call(metric, x, permuted), self.call(metric, x, y), rtol=1e-9)

    def test_non_integral_float_labels_are_rejected(self, metric, data):
        x, y = data
        with pytest.raises(ValueError, match="non-integral"):
            self.call(metric, x, y + 0.5)

    def test_integer_and_float32_features_are_computed_in_float64(self, metric, data):
        x, y = data
        as_int = np.round(x * 100).astype(np.int32)
        np.testing.assert_allclose(self.call(metric, as_int, y),
                                   self.call(metric, as_int.astype(np.float64), y), rtol=1e-12)
        x32 = x.astype(np.float32)
        np.testing.assert_allclose(self.call(metric, x32, y),
                                   self.call(metric, x32.astype(np.float64), y), rtol=1e-12)

    def test_inputs_are_not_modified(self, metric, data):
        x, y = data
        x_before, y_before = x.copy(), y.copy()
        self.call(metric, x, y)
        assert np.array_equal(x, x_before) and np.array_equal(y, y_before)

    def test_permuting_samples_changes_no_score(self, metric, data):
        if metric in ("ped", "nleep"):
            pytest.skip("PED returns per-sample features (see test_ped's permutation test); "
                        "N-LEEP's seeded k-means initialisation depends on sample order")
        x, y = data
        order = np.random.default_rng(0).permutation(len(y))
        assert self.call(metric, x[order], y[order]) == pytest.approx(self.call(metric, x, y), rel=1e-9)

    def test_object_arrays_are_rejected(self, metric, data):
        x, y = data
        with pytest.raises(ValueError, match="real numbers"):
            self.call(metric, x.astype(str), y)


@pytest.mark.parametrize("metric", ["gbc", "ped"])
def test_a_class_with_one_sample_is_rejected_where_a_spread_is_needed(metric, data):
    x, y = data
    y = y.copy()
    y[0] = 99
    with pytest.raises(ValueError, match="fewer than 2 samples"):
        TestFeatureMetrics().call(metric, x, y)


@pytest.mark.parametrize("metric", ["logme", "sfda", "hscore", "transrate", "parc"])
def test_a_class_with_one_sample_is_scored_where_no_spread_is_needed(metric, data):
    x, y = data
    y = y.copy()
    y[0] = 99
    assert np.isfinite(run(metric, x, y))


def test_reference_with_a_different_dimension_is_rejected(data):
    x, y = data
    with pytest.raises(ValueError, match="reference has 4 features but features has 5"):
        pedlib.ped.decline(x, y, reference=np.ones((10, 4)))


def test_reference_with_nan_is_rejected(data):
    x, y = data
    ref = np.ones((10, 5))
    ref[0, 0] = np.nan
    with pytest.raises(ValueError, match="reference contains"):
        pedlib.ped.decline(x, y, reference=ref)


def test_torch_tensors_are_accepted(data):
    torch = pytest.importorskip("torch")
    x, y = data
    assert pedlib.metrics.logme(torch.from_numpy(x), torch.from_numpy(y)) == pytest.approx(
        pedlib.metrics.logme(x, y))


def test_unknown_metric_lists_close_matches():
    with pytest.raises(ValueError, match="did you mean 'logme'"):
        pedlib.metrics.get("logm")


def test_registry_lists_every_metric_of_the_api():
    assert set(pedlib.metrics.available()) >= {"logme", "sfda", "gbc", "nleep", "parc", "hscore",
                                               "transrate", "leep", "nce"}
    assert "leep" not in pedlib.metrics.available("features")


def test_score_dispatches_with_and_without_ped(data):
    x, y = data
    assert pedlib.score(x, y) == pedlib.metrics.logme(x, y)
    assert pedlib.score(x, y, ped=True) == pedlib.ped.score(x, y)
    assert pedlib.score(x, y, "gbc", ped={"nsigma": 1.0}, metric_options={"gaussian_type": "diagonal"}) == \
        pedlib.metrics.gbc(pedlib.ped.decline(x, y, nsigma=1.0).features, y, gaussian_type="diagonal")
    with pytest.warns(UserWarning, match="only used with PED"):
        pedlib.score(x, y, reference=x)
    with pytest.raises(ValueError, match="ped must be"):
        pedlib.score(x, y, ped="yes")
