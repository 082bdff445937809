"""Models: the tower (``towers``), the two-tower retrieval model with its switches (``two_tower``),
the retrieval losses it trains with (``losses``), and the multitask model that adds a rating head and task
on the same towers (``multitask``)."""
