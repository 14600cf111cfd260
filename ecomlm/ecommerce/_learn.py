"""Small learners in NumPy: logistic and softmax regression, and a histogram
gradient-boosted tree ensemble for binary log-loss.

Shapes: X (N, F) features, y (N,) labels, W (F, K) weights.
They are deterministic (no sampling), so a fit depends only on its data.
"""

from __future__ import annotations

import numpy as np


def _sigmoid(z):
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def _softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


class Standardizer:
    def fit(self, X):
        self.mean = X.mean(axis=0)
        self.std = X.std(axis=0) + 1e-8
        return self

    def __call__(self, X):
        return (X - self.mean) / self.std


class SoftmaxRegression:
    """Multinomial logistic regression, L2-regularised, fitted by full-batch
    gradient descent with Nesterov momentum (the loss is convex and smooth)."""

    def __init__(self, l2: float = 1e-3, iters: int = 400, lr: float = 0.5, standardize: bool = True,
                 class_weight: str | None = None):
        self.l2, self.iters, self.lr, self.standardize, self.class_weight = l2, iters, lr, standardize, class_weight

    def fit(self, X, y, n_classes: int | None = None):
        X = np.asarray(X, np.float64)
        y = np.asarray(y, np.int64)
        K = int(n_classes or y.max() + 1)
        self.scaler = Standardizer().fit(X) if self.standardize else None
        Xs = self.scaler(X) if self.scaler else X
        N, F = Xs.shape
        Y = np.eye(K)[y]                                      # (N, K)
        w = np.ones(N)
        if self.class_weight == "balanced":
            counts = np.bincount(y, minlength=K).astype(float)
            w = (N / (K * np.maximum(counts, 1)))[y]
        w = w / w.sum()
        W = np.zeros((F, K))
        b = np.zeros(K)
        vW, vb = np.zeros_like(W), np.zeros_like(b)
        # step 1/L with L the smoothness bound of the averaged softmax loss
        L = 0.5 * (np.einsum("n,nf->", w, Xs * Xs) + 1) + self.l2
        step = min(self.lr, 1.0 / L) if L > 0 else self.lr
        for _ in range(self.iters):
            Wl, bl = W + 0.9 * vW, b + 0.9 * vb
            P = _softmax(Xs @ Wl + bl)
            G = (P - Y) * w[:, None]                          # (N, K)
            gW = Xs.T @ G + self.l2 * Wl
            gb = G.sum(axis=0)
            vW = 0.9 * vW - step * gW
            vb = 0.9 * vb - step * gb
            W, b = W + vW, b + vb
        self.W, self.b = W, b
        return self

    def predict_proba(self, X):
        X = np.asarray(X, np.float64)
        Xs = self.scaler(X) if self.scaler else X
        return _softmax(Xs @ self.W + self.b)

    def predict(self, X):
        return self.predict_proba(X).argmax(axis=1)


class LogisticRegression:
    """Binary logistic regression (a two-class SoftmaxRegression); `coef_`
    holds the weight of each standardised feature, for explanations."""

    def __init__(self, l2: float = 1e-3, iters: int = 500, class_weight: str | None = "balanced"):
        self._m = SoftmaxRegression(l2=l2, iters=iters, class_weight=class_weight)

    def fit(self, X, y):
        self._m.fit(X, np.asarray(y, np.int64), n_classes=2)
        self.coef_ = self._m.W[:, 1] - self._m.W[:, 0]
        return self

    def decision_function(self, X):
        X = np.asarray(X, np.float64)
        return self._m.scaler(X) @ self.coef_ + (self._m.b[1] - self._m.b[0])

    def predict_proba(self, X):
        return _sigmoid(self.decision_function(X))


class GradientBoostedTrees:
    """Binary log-loss gradient boosting with depth-limited trees on
    quantile-binned features (as LightGBM / HistGradientBoosting do), in NumPy.

    X is binned once into at most `n_bins` codes a feature; each tree level
    builds gradient and hessian histograms with one bincount a feature.
    """

    def __init__(self, n_trees: int = 150, depth: int = 4, learning_rate: float = 0.1, n_bins: int = 32,
                 l2: float = 1.0, min_child_hess: float = 1.0):
        self.n_trees, self.depth, self.lr, self.n_bins = n_trees, depth, learning_rate, n_bins
        self.l2, self.min_child_hess = l2, min_child_hess

    def _bin(self, X):
        codes = np.empty(X.shape, np.int64)
        for f, edges in enumerate(self.edges):
            codes[:, f] = np.searchsorted(edges, X[:, f], side="right")
        return codes

    def fit(self, X, y):
        X = np.asarray(X, np.float64)
        y = np.asarray(y, np.float64)
        N, F = X.shape
        qs = np.linspace(0, 1, self.n_bins + 1)[1:-1]
        self.edges = [np.unique(np.quantile(X[:, f], qs)) for f in range(F)]
        codes = self._bin(X)                                  # (N, F) in [0, n_bins)
        B = self.n_bins
        p0 = np.clip(y.mean(), 1e-6, 1 - 1e-6)
        self.base = float(np.log(p0 / (1 - p0)))
        raw = np.full(N, self.base)
        self.trees = []
        for _ in range(self.n_trees):
            p = _sigmoid(raw)
            g, h = p - y, np.maximum(p * (1 - p), 1e-6)
            node = np.zeros(N, np.int64)
            splits = []                                       # per level: (feature, threshold) per node
            for level in range(self.depth):
                n_nodes = 1 << level
                feats = np.zeros(n_nodes, np.int64)
                thr = np.full(n_nodes, B, np.int64)           # B: everything goes left (no split)
                best = np.zeros(n_nodes)
                for f in range(F):
                    idx = node * B + codes[:, f]
                    G = np.bincount(idx, g, n_nodes * B).reshape(n_nodes, B).cumsum(axis=1)
                    H = np.bincount(idx, h, n_nodes * B).reshape(n_nodes, B).cumsum(axis=1)
                    Gt, Ht = G[:, -1:], H[:, -1:]
                    GR, HR = Gt - G, Ht - H
                    gain = G ** 2 / (H + self.l2) + GR ** 2 / (HR + self.l2) - Gt ** 2 / (Ht + self.l2)
                    gain[(H < self.min_child_hess) | (HR < self.min_child_hess)] = 0.0
                    j = gain.argmax(axis=1)
                    gj = gain[np.arange(n_nodes), j]
                    better = gj > best + 1e-12
                    best[better], feats[better], thr[better] = gj[better], f, j[better]
                go_right = codes[np.arange(N), feats[node]] > thr[node]
                node = node * 2 + go_right
                splits.append((feats, thr))
            n_leaves = 1 << self.depth
            G = np.bincount(node, g, n_leaves)
            H = np.bincount(node, h, n_leaves)
            leaf = -self.lr * G / (H + self.l2)
            raw += leaf[node]
            self.trees.append((splits, leaf))
        return self

    def decision_function(self, X):
        codes = self._bin(np.asarray(X, np.float64))
        N = codes.shape[0]
        raw = np.full(N, self.base)
        rows = np.arange(N)
        for splits, leaf in self.trees:
            node = np.zeros(N, np.int64)
            for feats, thr in splits:
                node = node * 2 + (codes[rows, feats[node]] > thr[node])
            raw += leaf[node]
        return raw

    def predict_proba(self, X):
        return _sigmoid(self.decision_function(X))
