"""Linear-probe ground truth: logistic regression on frozen features."""

from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np
from threadpoolctl import threadpool_limits

from ..validation import check_features_labels, readable

__all__ = ["linear_probe"]


def linear_probe(train_features, train_labels, test_features, test_labels, *, seed: int = 0,
                 Cs: Sequence[float] = (1e-3, 1e-2, 1e-1, 1.0, 10.0), folds: int = 3,
                 max_iter: int = 500, threads: int | None = 1) -> dict:
    """Test accuracy of a seeded, cross-validated logistic regression on frozen features.

    Features are standardised with the train statistics; the inverse regularisation strength C
    is chosen from ``Cs`` by stratified ``folds``-fold cross-validation on train (accuracy),
    then the model is refitted on all of train and scored on test.

    Parameters
    ----------
    train_features : array-like of shape (n_train, n_features)
    train_labels : array-like of shape (n_train,)
    test_features : array-like of shape (n_test, n_features)
    test_labels : array-like of shape (n_test,)
        Every test label must occur in train.

    threads : int or None, default 1
        BLAS threads during the fit (None: the library default). These fits are small; on a
        busy 2-core machine one thread is ~10x faster than two competing for a core.

    Returns
    -------
    dict with ``accuracy`` (test), ``mean_class_accuracy`` (test), ``C`` (chosen) and
    ``cv_accuracy`` (mean cross-validated accuracy at that C).
    """
    train = check_features_labels(train_features, train_labels)
    test_x = check_features_labels(test_features, test_labels, min_classes=1).features
    if test_x.shape[1] != train.features.shape[1]:
        raise ValueError(f"train has {train.features.shape[1]} features, test {test_x.shape[1]}")
    position = {label: code for code, label in enumerate(train.classes.tolist())}
    unseen = sorted({label for label in np.asarray(test_labels).tolist() if label not in position})
    if unseen:
        raise ValueError(f"test labels {readable(list(unseen[:5]))} never occur in train")
    test_codes = np.array([position[label] for label in np.asarray(test_labels).tolist()])
    if train.counts.min() < folds:
        raise ValueError(f"linear_probe: a class has {train.counts.min()} train samples; "
                         f"{folds}-fold cross-validation needs at least {folds}")
    # sklearn is imported here: a process that never fits a probe (a fine-tuning job) skips it
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    pipeline = make_pipeline(StandardScaler(), LogisticRegression(max_iter=max_iter, random_state=seed))
    model = GridSearchCV(pipeline, {"logisticregression__C": list(Cs)}, scoring="accuracy",
                         cv=StratifiedKFold(folds, shuffle=True, random_state=seed), refit=True)
    with warnings.catch_warnings(), threadpool_limits(limits=threads):
        # Heavily regularised folds may stop at max_iter; the chosen C is still the best one.
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(train.features, train.codes)
    predicted = model.predict(test_x)
    correct = predicted == test_codes
    per_class = [correct[test_codes == c].mean() for c in np.unique(test_codes)]
    return {"accuracy": float(correct.mean()), "mean_class_accuracy": float(np.mean(per_class)),
            "C": float(model.best_params_["logisticregression__C"]),
            "cv_accuracy": float(model.best_score_)}
