"""Experiments: what the notebooks and ``make`` commands run on top of the model code.  ``workflow``
(load the data, split it, train or reuse a saved model), ``sweep`` (embedding dimension, notebook 05, ``make
sweep``), ``tuning`` (k-fold validation, ``make tune``), ``comparison`` (notebook 06's walk, checks and verdict),
``ranking_stage`` (notebook 08's rating models, ensemble and two stages, ``make ranking-tune``),
``multitask_sweep`` (notebook 07's sweep of task weights and its validation choices, ``make multitask-tune``),
``release`` (``make export``), ``sequence`` (notebook 09's sequence towers trained SASRec's way, ``make sequence-study``, ``make sequence-tune``), ``scaling``
(notebook 11).  The tuning commands write their choices to ``twotower_utils.presets``, where the experiments
read them.  Nothing below this layer imports it."""
