import numpy as np
import pytest

from pedlib.metrics import sfda
from pedlib.metrics.sfda import largest_eigenvalue_estimate
from oracles import sfda_explicit
from conftest import make_blobs


def test_sfda_matches_the_reference_steps_with_an_explicit_generalised_eigenproblem(blobs):
    x, y = blobs
    assert sfda(x, y) == pytest.approx(sfda_explicit(x, y), rel=1e-8)


def test_sfda_matches_reference_with_unequal_class_sizes():
    rng = np.random.default_rng(5)
    y = np.repeat(np.arange(3), [10, 25, 40])
    x = rng.normal(size=(75, 6)) * 0.3 + np.eye(3, 6)[y]
    assert sfda(x, y) == pytest.approx(sfda_explicit(x, y), rel=1e-8)


def test_power_iteration_estimate_is_close_to_the_top_eigenvalue():
    a = np.diag([5.0, 1.0, 0.5])
    assert largest_eigenvalue_estimate(a) == pytest.approx(5.0, rel=1e-3)
    assert largest_eigenvalue_estimate(np.zeros((3, 3))) == 0.0


def test_sfda_is_a_probability_and_higher_for_separated_classes():
    separated = make_blobs(separation=5.0)
    mixed = make_blobs(separation=0.1)
    a, b = sfda(*separated), sfda(*mixed)
    assert 0 < b < a <= 1


def test_sfda_rejects_classes_without_spread():
    x = np.array([[0.0, 1.0], [0.0, 1.0], [2.0, 3.0], [2.0, 3.0]])
    with pytest.raises(ValueError, match="within-class variation"):
        sfda(x, [0, 0, 1, 1])
