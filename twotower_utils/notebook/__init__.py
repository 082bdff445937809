"""Notebook helpers: the papermill runner (``runner``), plots, the interactive dimension panel
(``widgets``), data exploration (``exploration``), the embedding analyses of notebook 05
(``embeddings``) and the closing summary cell (``summary``).  The top layer: nothing in the package below imports it."""
