"""Models: the tower (``towers``), the two-tower retrieval model with its switches (``two_tower``),
and the retrieval losses it trains with (``losses``)."""
