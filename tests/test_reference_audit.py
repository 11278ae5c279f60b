"""The audit of every "as the reference does" claim (docs/definitions.md, "Audit"): on inputs
with dead units, N < D, N = D, duplicated rows and one dominant class, each metric equals its
literal oracle where it claims the reference's formula, and no score moves with the BLAS
thread count (no rank tolerance decides a score)."""

import warnings

import numpy as np
import pytest

from pedlib import metrics, ped

import oracles

threadpoolctl = pytest.importorskip("threadpoolctl")


def _labels(sizes):
    return np.repeat(np.arange(len(sizes)), sizes)


def _inputs():
    rng = np.random.default_rng(11)
    y = _labels([100] * 4)
    dead = np.maximum(rng.normal(size=(400, 160)) + np.eye(4, 160)[y], 0)
    dead[:, 100:] = 0
    yield "dead units", dead, y
    y = _labels([30] * 4)
    yield "n < d", np.maximum(rng.normal(size=(120, 320)), 0) + 2 * np.eye(4, 320)[y], y
    y = _labels([32] * 4)
    yield "n = d", rng.normal(size=(128, 128)) + np.eye(4, 128)[y], y
    y = _labels([34] * 4)
    yield "n ~ d", rng.normal(size=(136, 128)) + np.eye(4, 128)[y], y
    y = _labels([40] * 4)
    rows = np.maximum(rng.normal(size=(160, 96)), 0) + np.eye(4, 96)[y]
    yield "duplicated rows", np.vstack([rows, rows]), np.concatenate([y, y])
    y = _labels([300, 10, 10, 10])
    yield "one dominant class", rng.normal(size=(330, 48)) + 1.5 * np.eye(4, 48)[y], y


INPUTS = list(_inputs())
IDS = [name for name, _, _ in INPUTS]

ORACLES = {
    "logme": oracles.logme_explicit,
    "logme_reference": lambda x, y: oracles.logme_reference_literal(x, y)[0],
    "hscore": oracles.hscore_explicit,
    "hscore_shrinkage": oracles.hscore_shrinkage_literal,
    "sfda": oracles.sfda_explicit,
    "gbc": lambda x, y: oracles.gbc_explicit(x, y, "spherical"),
    "transrate": oracles.transrate_explicit,
}


def _probabilities(x, seed=0):
    logits = 0.1 * x @ np.random.default_rng(seed).normal(size=(x.shape[1], 10))
    logits -= logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    return p / p.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("name, x, y", INPUTS, ids=IDS)
@pytest.mark.parametrize("metric", sorted(ORACLES))
def test_metric_equals_its_literal_oracle(name, x, y, metric):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn's Ledoit-Wolf on rank-deficient input
        expected = ORACLES[metric](x, y)
    assert metrics.get(metric)(x, y) == pytest.approx(expected, rel=1e-7, abs=1e-12), (name, metric)


@pytest.mark.parametrize("name, x, y", INPUTS, ids=IDS)
def test_no_score_moves_with_the_blas_thread_count(name, x, y):
    reference = np.random.default_rng(5).normal(size=(200, x.shape[1]))
    probabilities = _probabilities(x)
    scores = {}
    for threads in (1, 2):
        with threadpoolctl.threadpool_limits(threads), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            row = {m: metrics.get(m)(x, y) for m in metrics.available("features")}
            row.update({m: metrics.get(m)(probabilities, y) for m in metrics.available("probabilities")})
            row["ped"] = ped.decline(x, y, reference).features
            row["logme+ped"] = ped.score(x, y, "logme", reference)
        scores[threads] = row
    for key, value in scores[1].items():
        np.testing.assert_allclose(scores[2][key], value, rtol=1e-9, atol=1e-12, err_msg=f"{name}: {key}")
