"""Models: the tower (``towers``), the two-tower retrieval model with its switches (``two_tower``),
the retrieval losses it trains with (``losses``), the multitask model that adds a rating head and task
on the same towers (``multitask``), and the ranking stage: the rating model (``ranking``), its NumPy
baselines (``rating_baselines``) and the re-rankers of a two-stage pipeline (``reranking``)."""
