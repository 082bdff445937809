"""Evaluation: the one counting core behind every hit rate (``counting``), the honest metrics computed
from it and from score matrices (``metrics``), the baselines every model must beat (``baselines``), and
RMSE/MAE of predicted ratings (``rating``); graded NDCG and the mean rating of hits live in ``metrics``."""
