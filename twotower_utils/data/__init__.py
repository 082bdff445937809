"""Data: MovieLens from TFDS (``movielens``), train/test/validation splits (``splits``), the side
features and sampling probabilities the towers and the loss read (``features``), and the training
input pipeline (``pipeline``).  Nothing here knows about models."""
