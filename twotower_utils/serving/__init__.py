"""Serving: recommendations for raw user ids from a trained model (``recommend``)."""
