import numpy as np
import pytest

from pedlib.metrics import gbc
from oracles import gbc_explicit


def test_gbc_of_two_identical_gaussians_is_minus_two():
    x = np.array([[-1.0, 0.5], [1.0, -0.5], [-1.0, 0.5], [1.0, -0.5]])
    for kind in ("spherical", "diagonal"):
        assert gbc(x, [0, 0, 1, 1], gaussian_type=kind) == pytest.approx(-2.0)


def test_gbc_one_dimensional_hand_computed():
    # Means 0 and 2, variances 1 and 1: BD = 1/8 * 4 / 1 = 0.5.
    x = np.array([[-1.0], [1.0], [1.0], [3.0]])
    assert gbc(x, [0, 0, 1, 1]) == pytest.approx(-2 * np.exp(-0.5))


def test_gbc_spherical_log_term_uses_scalar_variances_without_dimension_factor():
    # Class 0 variance 1 in both dims, class 1 variance 4 in both; equal means.
    x = np.array([[-1.0, -1.0], [1.0, 1.0], [-2.0, -2.0], [2.0, 2.0]])
    y = [0, 0, 1, 1]
    spherical = 0.5 * (np.log(2.5) - 0.5 * np.log(4.0))
    diagonal = 2 * spherical
    assert gbc(x, y, "spherical") == pytest.approx(-2 * np.exp(-spherical))
    assert gbc(x, y, "diagonal") == pytest.approx(-2 * np.exp(-diagonal))


@pytest.mark.parametrize("kind", ["spherical", "diagonal"])
def test_gbc_matches_pairwise_loop(blobs, kind):
    x, y = blobs
    assert gbc(x, y, kind) == pytest.approx(gbc_explicit(x, y, kind), rel=1e-10)


def test_gbc_floors_variances_at_1e_minus_4():
    x = np.array([[0.0], [0.0], [0.01], [0.01]])  # zero within-class variance
    bd = 0.125 * 0.01**2 / 1e-4
    assert gbc(x, [0, 0, 1, 1]) == pytest.approx(-2 * np.exp(-bd))


def test_gbc_rejects_unknown_gaussian_type(blobs):
    with pytest.raises(ValueError, match="gaussian_type"):
        gbc(*blobs, gaussian_type="full")
