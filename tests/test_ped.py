import numpy as np
import pytest

import pedlib
from pedlib.ped import decline
from oracles import ped_explicit

IDENTITY_REFERENCE = np.array([[-1.0], [1.0]])  # mean 0, std 1: Z = X


def test_ped_one_step_on_two_one_dimensional_classes_by_hand():
    # Class A {-1, 1}: mean 0, radius 1. Class B {2, 4}: mean 3, radius 1.
    # nsigma 2: overlap = 2 * (1 + 1) - 3 = 1; delta = 0.5 * 0.1^2 * 1 * 1 = 0.005.
    x = np.array([[-1.0], [1.0], [2.0], [4.0]])
    out = decline(x, [0, 0, 1, 1], IDENTITY_REFERENCE, nsigma=2.0, max_steps=1)
    np.testing.assert_allclose(out.features.ravel(), [-1.005, 0.995, 2.005, 4.005])
    assert out.steps == 1
    assert out.changes == pytest.approx((0.01,))


def test_ped_second_step_uses_updated_distance():
    x = np.array([[-1.0], [1.0], [2.0], [4.0]])
    out = decline(x, [0, 0, 1, 1], IDENTITY_REFERENCE, nsigma=2.0, max_steps=2)
    # After step 1 the means are 3.01 apart: overlap 0.99, delta 0.00495 each side.
    second = 0.00495
    np.testing.assert_allclose(out.features.ravel(),
                               [-1.005 - second, 0.995 - second, 2.005 + second, 4.005 + second])
    assert out.changes == pytest.approx((0.01, 0.0099))
    assert out.class_means.shape == (3, 2, 1)


def test_ped_displacement_is_capped_at_the_overlap_and_then_exits():
    # time_step 10: 0.5 * 100 * overlap > overlap, so each class moves by the overlap (1),
    # the classes then stand 5 apart > nsigma * (r_a + r_b) = 4: the next change is 0 and PED stops.
    x = np.array([[-1.0], [1.0], [2.0], [4.0]])
    out = decline(x, [0, 0, 1, 1], IDENTITY_REFERENCE, nsigma=2.0, time_step=10.0)
    np.testing.assert_allclose(out.features.ravel(), [-2.0, 0.0, 3.0, 5.0])
    assert out.steps == 1
    assert out.changes == pytest.approx((2.0, 0.0))


def test_ped_returns_features_unchanged_when_nothing_overlaps():
    x = np.array([[-1.0], [1.0], [100.0], [102.0]])
    out = decline(x, [0, 0, 1, 1], IDENTITY_REFERENCE)
    assert out.steps == 0
    np.testing.assert_array_equal(out.features, x)
    assert out.features is not x


def test_ped_exit_ratio_stops_when_motion_slows(blobs, reference):
    x, y = blobs
    out = decline(x, y, reference, nsigma=2.0, exit_ratio=0.999)
    assert out.steps == 1 and len(out.changes) == 2
    assert out.changes[1] / out.changes[0] <= 0.999


@pytest.mark.parametrize("options", [{}, dict(nsigma=2.0, time_step=0.5), dict(exit_ratio=0.9, nsigma=1.0)])
def test_ped_matches_the_class_pair_force_tensor(blobs, reference, options):
    x, y = blobs
    expected, steps = ped_explicit(x, y, reference, **options)
    out = decline(x, y, reference, **options)
    assert out.steps == steps
    np.testing.assert_allclose(out.features, expected, rtol=1e-10, atol=1e-10)


def test_ped_without_reference_standardises_with_the_features_own_statistics(blobs):
    x, y = blobs
    expected, _ = ped_explicit(x, y, x, nsigma=1.0)
    np.testing.assert_allclose(decline(x, y, nsigma=1.0).features, expected, atol=1e-10)


def test_ped_moves_overlapping_classes_apart(blobs, reference):
    x, y = blobs
    out = decline(x, y, reference, nsigma=2.0)
    before = np.linalg.norm(out.class_means[0][:, None] - out.class_means[0][None], axis=2)
    after = np.linalg.norm(out.class_means[-1][:, None] - out.class_means[-1][None], axis=2)
    assert out.steps >= 1
    assert after.sum() > before.sum()
    # Samples move rigidly with their class: within-class deviations are unchanged.
    for c in range(4):
        np.testing.assert_allclose(out.features[y == c] - out.features[y == c].mean(0),
                                   x[y == c] - x[y == c].mean(0), atol=1e-10)


def test_coincident_class_means_do_not_produce_nan():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(10, 3))
    x = np.vstack([base, base, base + 0.5])
    y = np.repeat([0, 1, 2], 10)
    out = decline(x, y, nsigma=2.0)
    assert np.isfinite(out.features).all()
    assert out.steps >= 1


def test_ped_is_invariant_to_scaling_and_shifting_features_with_the_reference(blobs, reference):
    x, y = blobs
    base = decline(x, y, reference, nsigma=1.5, eps=1e-9)
    scaled = decline(3.0 * x + 7.0, y, 3.0 * reference + 7.0, nsigma=1.5, eps=1e-9)
    np.testing.assert_allclose(scaled.features, 3.0 * base.features + 7.0, rtol=1e-9)
    assert scaled.steps == base.steps


def test_ped_is_invariant_to_permuting_samples(blobs, reference):
    x, y = blobs
    order = np.random.default_rng(0).permutation(len(y))
    out = decline(x, y, reference, nsigma=1.5).features
    np.testing.assert_allclose(decline(x[order], y[order], reference, nsigma=1.5).features, out[order])


def test_ped_is_bit_for_bit_deterministic(blobs, reference):
    x, y = blobs
    a = decline(x, y, reference, nsigma=1.5).features
    b = decline(x, y, reference, nsigma=1.5).features
    assert np.array_equal(a, b)


@pytest.mark.parametrize("metric", pedlib.metrics.available("features"))
def test_ped_score_wraps_every_feature_metric(blobs, reference, metric):
    x, y = blobs
    moved = decline(x, y, reference).features
    assert pedlib.ped.score(x, y, metric, reference) == pytest.approx(
        pedlib.metrics.get(metric)(moved, y))


def test_ped_wraps_a_user_registered_metric(blobs):
    from pedlib.metrics import _registry

    @pedlib.metrics.register("test_mean_spread")
    def mean_spread(features, labels):
        return float(np.asarray(features).std())

    try:
        x, y = blobs
        moved = decline(x, y, nsigma=2.0).features
        assert pedlib.score(x, y, "test_mean_spread", ped={"nsigma": 2.0}) == pytest.approx(moved.std())
        assert "test_mean_spread" in pedlib.metrics.available()
    finally:
        _registry._REGISTRY.remove("test_mean_spread")


def test_ped_refuses_probability_metrics(blobs):
    with pytest.raises(ValueError, match="probabilities"):
        pedlib.ped.score(*blobs, metric="leep")


@pytest.mark.parametrize("bad", [dict(time_step=0), dict(nsigma=-1), dict(max_steps=0),
                                 dict(exit_ratio=float("nan")), dict(eps=0)])
def test_ped_rejects_bad_options(blobs, bad):
    with pytest.raises(ValueError):
        decline(*blobs, **bad)


def test_ped_score_rejects_unknown_options(blobs):
    with pytest.raises(ValueError, match="unknown PED option"):
        pedlib.score(*blobs, ped={"nsgima": 0.3})
