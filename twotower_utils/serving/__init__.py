"""Serving: recommendations for raw user ids (``recommend``), a SavedModel any TensorFlow runtime can query
(``export``), loading and checking one (``loaded``), exact and ScaNN search (``index``), and the
``recommend``/``similar`` command line (``cli``)."""
