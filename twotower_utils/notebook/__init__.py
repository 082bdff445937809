"""Notebook helpers: the papermill runner (``runner``), plots, the interactive dimension panel
(``widgets``), data exploration (``exploration``) and the embedding analyses of notebook 05
(``embeddings``).  The top layer: nothing in the package below imports it."""
