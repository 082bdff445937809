"""What every notebook does first: load the data, split it, and get a trained model
(from ``output_dir`` when an earlier notebook saved one for the same run)."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import pandas as pd

from twotower_utils.config import RetrainError, RunConfig
from twotower_utils.data.loading import load_movielens
from twotower_utils.data.movielens import MovieLens
from twotower_utils.data.splits import Split, make_split
from twotower_utils.results import MODEL_DIR, load_model_weights, load_saved_config, save_model
from twotower_utils.runtime import say
from twotower_utils.training import TrainingResult, build_for, train


def load_saved_run(output_dir: str | os.PathLike):
    """The run (``RunConfig``) of the model ``save_model`` wrote under ``output_dir`` and everything saved
    beside it: ``(config, saved)``, or ``None`` when there is no saved model.  A model saved by an earlier
    version of twotower (one flat config for every model) is ``RetrainError``, naming the folder."""
    saved = load_saved_config(output_dir)
    if saved is None:
        return None
    what = f"the model in {Path(output_dir) / MODEL_DIR}"
    return RunConfig.from_dict(saved.get("config") if isinstance(saved, dict) else None, what=what), saved


@functools.lru_cache(maxsize=4)
def load_data(data_dir: str | None = None, download: bool = True, dataset: str = "100k") -> MovieLens:
    """``data.loading.load_movielens`` once per process (notebooks and widgets call it repeatedly); ``dataset``
    as ``RunConfig.dataset`` (a real set through TFDS, or a synthetic one)."""
    return load_movielens(dataset, data_dir, download)


def prepare(config: RunConfig, data_dir: str | None = None) -> tuple[MovieLens, Split]:
    """The run's data set and split."""
    data = load_data(data_dir, dataset=config.dataset)
    return data, make_split(data, config.split, config.seed, config.train_fraction)


def load_or_train(
    config: RunConfig, data: MovieLens, split: Split, output_dir: str | os.PathLike, verbose: int | str = "auto"
) -> tuple[TrainingResult, bool]:
    """The model saved in ``output_dir`` if it was trained with exactly ``config``;
    otherwise train one and save it there.  Returns the result and whether it was loaded.

    The saved model is a cache: one saved by an earlier version of twotower (the old flat config) is not an
    error here, it is said in one line and replaced by a model trained now."""
    try:
        found = load_saved_run(output_dir)
    except RetrainError as error:
        say(f"{error} (training it again now)")
        found = None
    if found is not None and found[0] == config:
        saved = found[1]
        model = build_for(config, data, split.train)
        load_model_weights(model, output_dir)
        history = pd.DataFrame(saved["history"]["data"], columns=saved["history"]["columns"])
        return TrainingResult(model, history, float(saved["seconds"])), True
    result = train(config, data, split, verbose=verbose)
    save_training(result, config, output_dir)
    return result, False


def save_training(result: TrainingResult, config: RunConfig, output_dir: str | os.PathLike) -> None:
    """Save the model with its run, history and training time, for ``load_or_train``."""
    history = result.history.to_dict("split")
    extra = {"history": {"columns": history["columns"], "data": history["data"]}, "seconds": result.seconds}
    save_model(result.model, config, output_dir, extra=extra)


def written_by_this_version(cached: dict, what: str, log=say, then: str = "computing it again") -> bool:
    """Whether a cache file's ``config`` reads as a ``RunConfig``.  One cached by an earlier version of twotower
    (the old flat config) is ignored with one line naming ``what`` and saying ``then`` (a cache, not an error)."""
    try:
        RunConfig.from_dict(cached.get("config"), what=what)
    except RetrainError as error:
        log(f"{error} ({then})")
        return False
    return True
