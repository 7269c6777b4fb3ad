"""Models for tests that must behave differently once served.

``ServedDifferently`` predicts like its inner model in the pipeline process but
shifts every class by one inside an endpoint server (where the model pointer
variable is set): what a training/serving environment mismatch looks like.
The server imports this module through the project root on its PYTHONPATH.
"""
from __future__ import annotations

import os
import time

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression

from pipeline.training.fitting import TrainingPipeline


class ServedDifferently(ClassifierMixin, BaseEstimator):
    def __init__(self, max_iter: int = 1000) -> None:
        self.max_iter = max_iter

    def fit(self, X, y):
        self.inner_ = LogisticRegression(max_iter=self.max_iter).fit(np.asarray(X), y)
        self.classes_ = self.inner_.classes_
        self.n_features_in_ = self.inner_.n_features_in_
        return self

    def predict(self, X):
        predictions = self.inner_.predict(np.asarray(X))
        if os.environ.get("MLOPS_MODEL_POINTER"):
            index = np.searchsorted(self.classes_, predictions)
            return self.classes_[(index + 1) % len(self.classes_)]
        return predictions


class ServedDifferentlyPipeline(TrainingPipeline):
    """Trains a ``ServedDifferently`` model: parity holds offline and breaks once served."""

    def train_local_model(self, X_train, y_train):
        return ServedDifferently().fit(X_train, y_train)


class SlowWhenServed(ClassifierMixin, BaseEstimator):
    """Predicts exactly like logistic regression, ``delay_seconds`` slower per call inside an endpoint server:
    a candidate that passes every offline and endpoint test and then slows live traffic down."""

    def __init__(self, delay_seconds: float = 0.2) -> None:
        self.delay_seconds = delay_seconds

    def fit(self, X, y):
        self.inner_ = LogisticRegression(max_iter=1000).fit(np.asarray(X), y)
        self.classes_ = self.inner_.classes_
        self.n_features_in_ = self.inner_.n_features_in_
        return self

    def predict(self, X):
        if os.environ.get("MLOPS_MODEL_POINTER"):
            time.sleep(self.delay_seconds)
        return self.inner_.predict(np.asarray(X))


class SlowWhenServedPipeline(TrainingPipeline):
    def train_local_model(self, X_train, y_train):
        return SlowWhenServed().fit(X_train, y_train)
