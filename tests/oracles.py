"""Slow, literal implementations of the published definitions, used only as test oracles.

Each follows its paper / reference formula step by step with explicit matrices and loops,
sharing no code with pedlib, so a test comparing the two can fail.
"""

import numpy as np
import scipy.linalg
import scipy.special


def logme_explicit(f, y):
    """LogME with explicit A = alpha I + beta F^T F and a full log-determinant over D eigenvalues."""
    f = np.asarray(f, dtype=float)
    n, d = f.shape
    ftf = f.T @ f
    evidences = []
    for c in np.unique(y):
        t_vec = (y == c).astype(float)
        alpha, beta = 1.0, 1.0
        for _ in range(11):
            t = alpha / beta
            m = np.linalg.solve(ftf + t * np.eye(d), f.T @ t_vec)
            eig = np.linalg.eigvalsh(ftf)
            eig = np.clip(eig, 0, None)
            gamma = np.sum(eig / (eig + t))
            m2 = m @ m
            res2 = np.sum((t_vec - f @ m) ** 2)
            alpha = gamma / (m2 + 1e-5)
            beta = (n - gamma) / (res2 + 1e-5)
            if abs(alpha / beta - t) / t <= 1e-3:
                break
        _, logdet = np.linalg.slogdet(alpha * np.eye(d) + beta * ftf)
        evidence = (d / 2 * np.log(alpha) + n / 2 * np.log(beta) - logdet / 2
                    - beta / 2 * res2 - alpha / 2 * m2 - n / 2 * np.log(2 * np.pi)) / n
        evidences.append(evidence)
    return float(np.mean(evidences))


def sfda_explicit(x, y):
    """SFDA following the reference steps: loops over classes, explicit generalised eigh."""
    x = np.array(x, dtype=float)
    classes = np.unique(y)
    n, d = x.shape

    def fit(features, shrinkage):
        priors = np.array([np.mean(y == c) for c in classes])
        means = np.array([features[y == c].mean(axis=0) for c in classes])
        sw = sum(p * np.cov(features[y == c].T, bias=True) for p, c in zip(priors, classes))
        sw = np.atleast_2d(sw)
        if shrinkage is None:
            v = sw.sum(axis=1)
            for _ in range(3):
                u = sw @ v
                u = u / np.linalg.norm(u)
                v = sw @ u
                v = v / np.linalg.norm(v)
            shrinkage = max(np.exp(-5 * (v @ sw @ u)), 1e-10)
        st = np.atleast_2d(np.cov(features.T, bias=True))
        st_s = (1 - shrinkage) * st + shrinkage * np.trace(st) / d * np.eye(d)
        sw_s = (1 - shrinkage) * sw + shrinkage * np.trace(sw) / d * np.eye(d)
        evals, evecs = scipy.linalg.eigh(st_s - sw_s, sw_s)
        evecs = evecs[:, np.argsort(evals)[::-1]]
        coef = means @ evecs @ evecs.T
        intercept = -0.5 * np.diag(means @ coef.T) + np.log(priors)
        return features @ coef.T + intercept, means, shrinkage

    index = np.searchsorted(classes, y)
    scores, means, lam = fit(x, None)
    prob = scipy.special.softmax(scipy.special.softmax(scores, axis=1), axis=1)
    mixed = x.copy()
    for k in range(len(classes)):
        rows = index == k
        other = (means.sum(axis=0) - means[k]) / (len(classes) - 1)
        p = prob[rows, k][:, None]
        mixed[rows] = p * x[rows] + (1 - p) * other
    scores, _, _ = fit(mixed, lam)
    prob = scipy.special.softmax(scores, axis=1)
    return float(prob[np.arange(n), index].mean())


def gbc_explicit(x, y, gaussian_type):
    classes = np.unique(y)
    stats = []
    for c in classes:
        xc = x[y == c]
        stats.append((xc.mean(axis=0), np.maximum(xc.var(axis=0), 1e-4)))
    total = 0.0
    for i, (m1, v1) in enumerate(stats):
        for j, (m2, v2) in enumerate(stats):
            if i == j:
                continue
            if gaussian_type == "spherical":
                v1s, v2s = v1.mean(), v2.mean()
                avg = 0.5 * (v1s + v2s)
                bd = 0.125 * np.sum((m1 - m2) ** 2 / avg) + 0.5 * (np.log(avg) - 0.5 * (np.log(v1s) + np.log(v2s)))
            else:
                avg = 0.5 * (v1 + v2)
                bd = 0.125 * np.sum((m1 - m2) ** 2 / avg) + 0.5 * (
                    np.sum(np.log(avg)) - 0.5 * (np.sum(np.log(v1)) + np.sum(np.log(v2))))
            total += np.exp(-bd)
    return -total


def ped_explicit(x, y, g, time_step=0.1, exit_ratio=0.5, nsigma=0.6, constant=1.0, max_steps=6, eps=1e-3):
    """PED as the paper's code does it: the (C, C, D) force tensor, statistics recomputed each step."""
    x = np.array(x, dtype=float)
    classes = np.unique(y)
    mean, std = g.mean(axis=0), np.maximum(g.std(axis=0), eps)

    def one_step(features):
        z = (features - mean) / std
        mus = np.array([z[y == c].mean(axis=0) for c in classes])
        radii = np.array([np.sqrt(z[y == c].var(axis=0).sum()) for c in classes])
        k = len(classes)
        force = np.zeros((k, k, z.shape[1]))
        for a in range(k):
            for b in range(k):
                if a == b:
                    continue
                diff = mus[a] - mus[b]
                dist = np.linalg.norm(diff)
                overlap = max(nsigma * (radii[a] + radii[b]) - dist, 0.0)
                delta = min(0.5 * time_step**2 * constant * overlap, overlap)
                if dist > 0:
                    force[a, b] = delta * diff / dist
        move = force.sum(axis=1)
        index = np.searchsorted(classes, y)
        return (z + move[index]) * std + mean, np.abs(move).sum()

    steps = 0
    first = None
    while steps < max_steps:
        new, change = one_step(x)
        if first is None:
            first = change
            if change == 0:
                break
        elif change / first <= exit_ratio:
            break
        x = new
        steps += 1
    return x, steps


def hscore_explicit(f, y):
    f = np.asarray(f, dtype=float)
    cov_f = np.cov(f.T, ddof=1)
    g = np.zeros_like(f)
    for c in np.unique(y):
        g[y == c] = f[y == c].mean(axis=0)
    cov_g = np.cov(g.T, ddof=1)
    return float(np.trace(np.linalg.pinv(cov_f, rcond=1e-15) @ cov_g))


def transrate_explicit(z, y, eps=1e-4):
    def rate(m):
        n, d = m.shape
        return 0.5 * np.linalg.slogdet(np.eye(d) + 1 / (n * eps) * m.T @ m)[1]

    z = z - z.mean(axis=0)
    classes = np.unique(y)
    return rate(z) - sum(rate(z[y == c]) for c in classes) / len(classes)


def logme_reference_literal(f, y):
    """The reference repository's fixed-point LogME, transcribed literally: a thin SVD when
    N <= D, else the eigendecomposition of F^T F keeping singular values above 1e-10; one
    class at a time; the log-determinant over the kept singular values only."""
    n, d = f.shape
    if n > d:
        u_, s_, vh = np.linalg.svd(f.T @ f)
        s = np.sqrt(s_)
        k = int(np.sum(s > 1e-10))
        u = (f @ vh.T)[:, :k] / s[:k]
        s = s[:k]
    else:
        u, s, _ = np.linalg.svd(f, full_matrices=False)
    sigma = (s**2).reshape(-1, 1)
    evidences, alphas = [], []
    for c in np.unique(y):
        target = (y == c).astype(np.float64).reshape(-1, 1)
        x = u.T @ target
        x2 = x**2
        res_x2 = (target**2).sum() - x2.sum()
        alpha, beta = 1.0, 1.0
        for _ in range(11):
            t = alpha / beta
            gamma = (sigma / (sigma + t)).sum()
            m2 = (sigma * x2 / ((t + sigma) ** 2)).sum()
            res2 = (x2 / ((1 + sigma / t) ** 2)).sum() + res_x2
            alpha = gamma / (m2 + 1e-5)
            beta = (n - gamma) / (res2 + 1e-5)
            t_ = alpha / beta
            evidence = (d / 2 * np.log(alpha) + n / 2 * np.log(beta) - 0.5 * np.sum(np.log(alpha + beta * sigma))
                        - beta / 2 * res2 - alpha / 2 * m2 - n / 2 * np.log(2 * np.pi)) / n
            if abs(t_ - t) / t <= 1e-3:
                break
        evidences.append(evidence)
        alphas.append(alpha)
    return float(np.mean(evidences)), np.array(alphas)


def hscore_shrinkage_literal(f, y):
    """Regularised H-score with explicit matrices: Ledoit-Wolf covariance, its pseudo-inverse,
    and np.cov of the features with each sample replaced by its class mean."""
    from sklearn.covariance import LedoitWolf

    estimate = LedoitWolf(assume_centered=False).fit(f)
    g = np.zeros_like(f)
    for c in np.unique(y):
        g[y == c] = f[y == c].mean(axis=0)
    between = np.cov(g, rowvar=False, bias=True)  # normalised like Ledoit-Wolf's covariance
    return float(np.trace(np.linalg.pinv(estimate.covariance_, rcond=1e-15) @ ((1 - estimate.shrinkage_) * between)))


def knn_literal(f, y, k=20, temperature=0.07):
    """Leave-one-out weighted k-NN accuracy, one sample at a time."""
    unit = f / np.linalg.norm(f, axis=1, keepdims=True)
    classes = np.unique(y)
    correct = 0
    for i in range(len(f)):
        similarity = unit @ unit[i]
        similarity[i] = -np.inf
        order = np.argsort(-similarity, kind="stable")[:min(k, len(f) - 1)]
        votes = {c: 0.0 for c in classes}
        for j in order:
            votes[y[j]] += np.exp(similarity[j] / temperature)
        best = max(votes.values())
        predicted = min(c for c, v in votes.items() if np.isclose(v, best, rtol=1e-12, atol=0))
        correct += predicted == y[i]
    return correct / len(f)
