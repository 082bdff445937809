"""A gradient-boosted re-ranker: LightGBM's ``LGBMRanker`` with the LambdaRank objective over stage-one lists.

Each user's list of N candidates is one query group; the labels are 1 for the user's held-out movies among the
candidates and 0 for the others (``reranking.candidate_labels``).  The trees see the raw features (no scaling
needed) from ``ltr_features.candidate_matrix``.  Training is seeded and deterministic (``deterministic=True``,
``force_row_wise=True``, a fixed number of threads), so a seed gives the same model and the same scores.

``fit(features, groups, labels)`` / ``rerank(features)`` take flat rows (``[rows, F]``, ``groups`` the list
sizes in row order, as LightGBM does); ``fit_lists`` / ``score_lists`` take ``[users, N, F]`` lists as
``reranking.LearnedReranker`` does and return ``[users, N]`` scores.  ``importances`` is a table of the features'
total gain (and split counts).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

DEFAULTS: dict[str, Any] = {
    "n_estimators": 300,
    "num_leaves": 15,
    "learning_rate": 0.05,
    "min_child_samples": 50,
    "subsample": 0.8,
    "subsample_freq": 1,
    "colsample_bytree": 0.8,
    "reg_lambda": 1.0,
}


class GBDTReranker:
    """LambdaRank gradient-boosted trees over candidate lists.  ``settings`` override ``DEFAULTS`` (any
    ``LGBMRanker`` argument); ``eval_at`` is the cut-off LambdaRank optimises (NDCG@k)."""

    def __init__(self, seed: int = 0, threads: int = 1, eval_at: int = 10, **settings: Any) -> None:
        self.seed, self.threads, self.eval_at = int(seed), int(threads), int(eval_at)
        self.settings = {**DEFAULTS, **settings}
        self.model = None
        self.names: list[str] | None = None

    def _ranker(self):
        from lightgbm import LGBMRanker  # here: only this re-ranker needs LightGBM

        return LGBMRanker(
            objective="lambdarank",
            random_state=self.seed,
            n_jobs=self.threads,
            deterministic=True,
            force_row_wise=True,
            lambdarank_truncation_level=max(self.eval_at, 1) * 2,
            verbose=-1,
            **self.settings,
        )

    def fit(
        self,
        features: np.ndarray,
        groups: Sequence[int],
        labels: np.ndarray,
        names: Sequence[str] | None = None,
    ) -> GBDTReranker:
        """Fit on flat ``[rows, F]`` features, the query groups' sizes (summing to ``rows``) and 0/1 (or graded)
        ``labels`` per row."""
        features = np.asarray(features, dtype=np.float32)
        labels = np.asarray(labels)
        groups = np.asarray(groups, dtype=np.int64)
        if features.ndim != 2 or len(features) != len(labels) or groups.sum() != len(features):
            raise ValueError(
                f"{features.shape} features, {labels.shape} labels and groups summing to {groups.sum()} disagree"
            )
        if not (labels > 0).any():
            raise ValueError("no positive label: nothing to learn from")
        self.names = list(names) if names is not None else [f"feature {i}" for i in range(features.shape[1])]
        self.model = self._ranker().fit(features, labels.astype(np.int32), group=groups)
        return self

    def rerank(self, features: np.ndarray) -> np.ndarray:
        """Scores (higher first) of flat ``[rows, F]`` features."""
        if self.model is None:
            raise ValueError("fit the re-ranker first")
        return self.model.predict(np.asarray(features, dtype=np.float32), num_threads=self.threads).astype(np.float64)

    def fit_lists(self, features: np.ndarray, labels: np.ndarray, names: Sequence[str] | None = None) -> GBDTReranker:
        """Fit on ``[users, N, F]`` lists and ``[users, N]`` labels; users without a positive are skipped (their
        lists carry no LambdaRank gradient)."""
        keep = labels.sum(axis=1) > 0
        x, y = features[keep], labels[keep]
        return self.fit(x.reshape(-1, x.shape[-1]), np.full(len(x), x.shape[1]), y.reshape(-1), names)

    def score_lists(self, features: np.ndarray) -> np.ndarray:
        """``[users, N]`` scores of ``[users, N, F]`` lists."""
        return self.rerank(features.reshape(-1, features.shape[-1])).reshape(features.shape[:2])

    def importances(self) -> pd.DataFrame:
        """The features' total gain (and share of it) and number of splits, by gain."""
        if self.model is None:
            raise ValueError("fit the re-ranker first")
        booster = self.model.booster_
        gain = booster.feature_importance(importance_type="gain")
        splits = booster.feature_importance(importance_type="split")
        table = pd.DataFrame({"feature": self.names, "gain": gain, "splits": splits})
        table["gain share"] = table["gain"] / max(table["gain"].sum(), 1e-12)
        return table.sort_values("gain", ascending=False, kind="stable").reset_index(drop=True)


def list_hit_rate(scores: np.ndarray, labels: np.ndarray, k: int = 10) -> float:
    """The share of lists with a positive in their top k by ``scores`` (ties: the earlier candidate first), over
    the lists that have a positive at all: a quick measure on candidate lists (validation, synthetic data)."""
    order = np.lexsort((np.broadcast_to(np.arange(scores.shape[1]), scores.shape), -scores), axis=1)
    top = np.take_along_axis(labels, order[:, :k], axis=1)
    has = labels.sum(axis=1) > 0
    return float((top.sum(axis=1) > 0)[has].mean()) if has.any() else 0.0


def list_ndcg(scores: np.ndarray, labels: np.ndarray, k: int = 10) -> float:
    """Mean binary NDCG@k of the lists with a positive, the ideal being every positive of the list on top."""
    order = np.lexsort((np.broadcast_to(np.arange(scores.shape[1]), scores.shape), -scores), axis=1)
    top = np.take_along_axis(labels, order[:, :k], axis=1) > 0
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = (top * discounts).sum(axis=1)
    ideal = np.array([discounts[: min(int(n), k)].sum() for n in (labels > 0).sum(axis=1)])
    has = ideal > 0
    return float((dcg[has] / ideal[has]).mean()) if has.any() else 0.0
