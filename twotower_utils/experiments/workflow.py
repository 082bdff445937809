"""What every notebook does first: load the data, split it, and get a trained model
(from ``output_dir`` when an earlier notebook saved one for the same config)."""

from __future__ import annotations

import functools
import os

import pandas as pd

from twotower_utils.config import ExperimentConfig
from twotower_utils.data.movielens import MovieLens
from twotower_utils.data.splits import Split, make_split
from twotower_utils.results import load_model_weights, load_saved_config, save_model
from twotower_utils.training import TrainingResult, build_for, train


@functools.lru_cache(maxsize=4)
def load_data(data_dir: str | None = None, download: bool = True, dataset: str = "100k") -> MovieLens:
    """``MovieLens.load`` once per process (notebooks and widgets call it repeatedly); ``dataset`` as
    ``ExperimentConfig.dataset`` (a real set through TFDS, or a synthetic one)."""
    return MovieLens.load(data_dir, download, dataset=dataset)


def prepare(config: ExperimentConfig, data_dir: str | None = None) -> tuple[MovieLens, Split]:
    """The config's data set and split."""
    data = load_data(data_dir, dataset=config.dataset)
    return data, make_split(data, config.split, config.seed, config.train_fraction)


def load_or_train(
    config: ExperimentConfig, data: MovieLens, split: Split, output_dir: str | os.PathLike, verbose: int | str = "auto"
) -> tuple[TrainingResult, bool]:
    """The model saved in ``output_dir`` if it was trained with exactly ``config``;
    otherwise train one and save it there.  Returns the result and whether it was loaded."""
    saved = load_saved_config(output_dir)
    # from_dict fills fields added since the model was saved with their defaults (which keep the old behaviour)
    if saved is not None and ExperimentConfig.from_dict(saved.get("config", {})) == config:
        model = build_for(config, data, split.train)
        load_model_weights(model, output_dir)
        history = pd.DataFrame(saved["history"]["data"], columns=saved["history"]["columns"])
        return TrainingResult(model, history, float(saved["seconds"])), True
    result = train(config, data, split, verbose=verbose)
    save_training(result, config, output_dir)
    return result, False


def save_training(result: TrainingResult, config: ExperimentConfig, output_dir: str | os.PathLike) -> None:
    """Save the model with its config, history and training time, for ``load_or_train``."""
    history = result.history.to_dict("split")
    extra = {"history": {"columns": history["columns"], "data": history["data"]}, "seconds": result.seconds}
    save_model(result.model, config, output_dir, extra=extra)
