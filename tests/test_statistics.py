"""PED from class statistics: every metric with a statistics path scores a PED setting exactly
as it scores the explicitly moved features, on full-rank, rank-deficient and N < D features,
through both evaluators (one eigendecomposition per setting, or a rank-C update of the
within-class scatter's when many settings share the statistics)."""

import numpy as np
import pytest

from pedlib import metrics, ped
from pedlib.scoring import score_features
from pedlib.statistics import FeatureStatistics
from pedlib.validation import check_features_labels

from conftest import make_blobs

STATISTICS_METRICS = ["logme", "logme_reference", "gbc"]


def _cases():
    rng = np.random.default_rng(7)
    x, y = make_blobs(n_per_class=60, n_classes=5, n_features=24, separation=0.6, seed=2)
    yield "full rank", x, y
    dead = np.maximum(x, 0)
    dead[:, 16:] = 0
    yield "dead units", dead, y
    yield "duplicated columns", np.hstack([x, x[:, :6]]), y
    wide, labels = make_blobs(n_per_class=6, n_classes=4, n_features=50, separation=0.5, seed=3)
    yield "n < d", wide, labels
    square, labels = make_blobs(n_per_class=10, n_classes=4, n_features=40, separation=0.5, seed=4)
    yield "n = d", square, labels
    far = x + 50.0  # a large common mean: the within-class scatter comes from a cancellation
    yield "offset features", far, y
    yield "one dominant class", *make_blobs_uneven(rng)


def make_blobs_uneven(rng):
    y = np.repeat(np.arange(4), [200, 8, 8, 8])
    return rng.normal(size=(len(y), 20)) + 0.7 * np.eye(4, 20)[y], y


CASES = list(_cases())


@pytest.mark.parametrize("name, x, y", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("translations", [1, 18])
def test_statistics_path_equals_the_metric_on_explicitly_moved_features(name, x, y, translations):
    reference = np.random.default_rng(0).normal(scale=2.0, size=(150, x.shape[1]))
    for options in (dict(ped.DEFAULTS), dict(ped.DEFAULTS, nsigma=2.0, time_step=0.4)):
        moved = ped.decline(x, y, reference, **options)
        assert moved.steps > 0, name
        stats = FeatureStatistics(check_features_labels(x, y), translations=translations)
        motion = ped.motion(stats, reference, **options)
        assert motion.steps == moved.steps
        for metric in STATISTICS_METRICS:
            entry = metrics.info(metric)
            explicit = entry.function(moved.features, y)
            fast = entry.from_statistics(stats.translated(motion.offsets))
            assert fast == pytest.approx(explicit, rel=1e-8), (name, metric, options)


def test_both_logme_evaluators_are_used_and_agree():
    x, y = make_blobs(n_per_class=50, n_classes=4, n_features=16, separation=0.5)
    from pedlib.metrics.logme import _LowRankUpdate, _Spectrum, _evaluator

    single = FeatureStatistics(check_features_labels(x, y), translations=1)
    many = FeatureStatistics(check_features_labels(x, y), translations=5)
    offsets = ped.motion(single).offsets
    assert isinstance(_evaluator(single.translated(offsets)), _Spectrum)
    assert isinstance(_evaluator(many.translated(offsets)), _LowRankUpdate)
    assert isinstance(_evaluator(many.translated(None)), _Spectrum)  # plain: the Gram's own spectrum
    a = metrics.info("logme").from_statistics(single.translated(offsets))
    b = metrics.info("logme").from_statistics(many.translated(offsets))
    assert a == pytest.approx(b, rel=1e-12)


def test_translated_gram_is_the_gram_of_the_moved_features():
    for x, y in (make_blobs(n_per_class=20, n_classes=3, n_features=8), make_blobs(n_per_class=3, n_classes=3, n_features=20)):
        stats = FeatureStatistics(check_features_labels(x, y))
        offsets = np.random.default_rng(2).normal(size=(3, x.shape[1]))
        moved = x + offsets[y]
        gram = np.tril(stats.translated(offsets)._gram_lower())
        expected = moved.T @ moved if len(x) > x.shape[1] else moved @ moved.T
        np.testing.assert_allclose(gram, np.tril(expected), rtol=1e-12, atol=1e-12)
        np.testing.assert_array_equal(stats.translated(offsets).features(), moved)
        np.testing.assert_allclose(stats.translated(offsets).class_sums,
                                   np.array([moved[y == c].sum(axis=0) for c in range(3)]), rtol=1e-12)


def test_zero_offsets_are_the_identity_and_shapes_are_checked():
    x, y = make_blobs()
    stats = FeatureStatistics(check_features_labels(x, y))
    assert stats.translated(np.zeros((4, 12))).identity
    assert stats.translated(np.zeros((4, 12))).features() is stats.features
    with pytest.raises(ValueError, match="offsets must have shape"):
        stats.translated(np.zeros((3, 12)))


def test_statistics_do_not_modify_the_features():
    x, y = make_blobs(n_per_class=30, n_classes=3, n_features=10, separation=0.4)
    before = x.copy()
    for metric in STATISTICS_METRICS:
        ped.score(x, y, metric)
        ped.score(x, y, metric, reference=x[:20] * 2)
    np.testing.assert_array_equal(x, before)


def test_score_features_matches_each_setting_scored_on_its_own():
    x, y = make_blobs(n_per_class=40, n_classes=4, n_features=12, separation=0.5)
    reference = np.random.default_rng(3).normal(size=(100, 12))
    variants = [("ped", "source", dict(ped.DEFAULTS)),
                ("ped:ref=none", "none", dict(ped.DEFAULTS)),
                ("ped:nsigma=2.0,time_step=0.4", "source", dict(ped.DEFAULTS, nsigma=2.0, time_step=0.4))]
    table = score_features(x, y, ["logme", "gbc", "knn"], {}, variants, {"source": reference, "none": None},
                           sensitivity_metrics=["logme"])
    for _, row in table.iterrows():
        if row.variant == "plain":
            expected = metrics.get(row.metric)(x, y)
        else:
            options = dict(ped.DEFAULTS, nsigma=row.nsigma, time_step=row.time_step)
            ref = reference if row.reference == "source" else None
            expected = metrics.get(row.metric)(ped.decline(x, y, ref, **options).features, y)
        assert row.score == pytest.approx(expected, rel=1e-8), (row.metric, row.variant)
    assert set(table.method) >= {"logme", "logme+ped", "logme+ped[ref=none]", "gbc+ped",
                                 "knn+ped", "logme+ped[nsigma=2.0,time_step=0.4]"}
    assert "gbc+ped[nsigma=2.0,time_step=0.4]" not in set(table.method)


def test_ped_needs_two_samples_per_class_and_says_so():
    x, y = make_blobs(n_per_class=5, n_classes=3, n_features=4)
    y = y.copy()
    y[0] = 7  # a class of one sample
    with pytest.raises(ValueError, match="PED needs at least 2 samples per class"):
        ped.score(x, y, "logme")
    assert np.isfinite(metrics.logme(x, y))  # the metric alone accepts it


def test_ped_without_a_reference_warns_that_it_is_not_the_papers_setting():
    x, y = make_blobs()
    with pytest.warns(UserWarning, match="not the paper's setting"):
        ped.score(x, y, "logme")


def test_the_rank_c_evaluator_is_chosen_only_where_it_pays():
    from pedlib.metrics.logme import _low_rank_pays

    def stats(n_classes, n_features, translations):
        y = np.arange(4 * n_features) % n_classes
        return FeatureStatistics(check_features_labels(np.ones((len(y), n_features)), y), translations)

    assert _low_rank_pays(stats(50, 1024, 16))  # the pocket study's sensitivity grid
    assert not _low_rank_pays(stats(50, 1024, 1))  # one setting: one decomposition
    assert not _low_rank_pays(stats(397, 2048, 16))  # C^3 ~ D^2: a decomposition per setting is cheaper

    def wide(n_samples, n_features, translations):  # N <= D: a setting costs an N x N decomposition
        y = np.arange(n_samples) % 10
        return FeatureStatistics(check_features_labels(np.ones((n_samples, n_features)), y), translations)

    assert _low_rank_pays(wide(1000, 1280, 18))  # a 224-px MobileNet on a pocket target
    assert not _low_rank_pays(wide(100, 1280, 18))  # far fewer samples: 18 small kernels are cheaper


def test_the_rank_c_evaluator_also_serves_fewer_samples_than_dimensions():
    from pedlib.metrics.logme import _LowRankUpdate, _Spectrum, _evaluator

    x, y = make_blobs(n_per_class=12, n_classes=3, n_features=60, separation=0.5, seed=5)  # N = 36 < D
    single = FeatureStatistics(check_features_labels(x, y), translations=1)
    many = FeatureStatistics(check_features_labels(x, y), translations=18)
    offsets = ped.motion(single).offsets
    assert isinstance(_evaluator(single.translated(offsets)), _Spectrum)  # the kernel's spectrum
    assert isinstance(_evaluator(many.translated(offsets)), _LowRankUpdate)
    for metric in ("logme", "logme_reference"):
        a = metrics.info(metric).from_statistics(single.translated(offsets))
        b = metrics.info(metric).from_statistics(many.translated(offsets))
        assert a == pytest.approx(b, rel=1e-10), metric
