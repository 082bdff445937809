"""What ``make export`` runs: the model to serve (by default notebook 06's best two-tower, ``presets.best_two_tower``,
trained once and kept in ``<output_dir>/serving``; or any model a notebook saved), exported as a SavedModel.

    python -m twotower_utils export                                  # best two-tower -> results/export/twotower/<n>
    python -m twotower_utils export --index scann --export-dir results/export/twotower_scann
    python -m twotower_utils export --from results                   # the model notebooks 03/04 saved
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from twotower_utils import presets
from twotower_utils.config import ConfigError, RunConfig
from twotower_utils.data.movielens import DataUnavailableError
from twotower_utils.data.splits import make_split
from twotower_utils.experiments.workflow import load_data, load_or_train, load_saved_run, prepare, save_training
from twotower_utils.results import MODEL_DIR, load_model_weights
from twotower_utils.serving.export import INDEX_KINDS, export_model
from twotower_utils.training import TrainingResult, build_for

PROG = "python -m twotower_utils export"
SERVING_DIR = "serving"  # under output_dir: the best model's weights, reused by the next export


def best_model(
    output_dir: str | Path, data_dir: str | None = None, seed: int = RunConfig.seed, verbose: int = 0, **overrides
):
    """The best two-tower (``presets.best_two_tower`` with ``overrides``), its data and split: loaded from
    ``<output_dir>/serving`` when it was trained with the same run, else trained and saved there.
    Returns ``(model, config, data, split, loaded)``."""
    config = presets.best_two_tower(seed=seed, **overrides)
    data, split = prepare(config, data_dir)
    result, loaded = load_or_train(config, data, split, Path(output_dir) / SERVING_DIR, verbose=verbose)
    return result.model, config, data, split, loaded


def keep_for_serving(result: TrainingResult, config: RunConfig, output_dir: str | Path) -> bool:
    """Save a best two-tower trained elsewhere (notebook 06's walk) where ``best_model`` looks for it, so serving
    loads it instead of training the same model again; only a model of ``best_model``'s own run is kept.
    Returns whether it was kept."""
    if config != presets.best_two_tower(seed=config.seed, epochs=config.epochs):
        return False
    save_training(result, config, Path(output_dir) / SERVING_DIR)
    return True


def saved_model(model_dir: str | Path, data_dir: str | None = None):
    """The model ``results.save_model`` wrote under ``<model_dir>/model`` (any run), with its data and
    split.  Returns ``(model, config, data, split)``.  A model saved by an earlier version of twotower (the old
    flat config) is not guessed at: it stops here with ``RetrainError`` (one line from ``main``)."""
    found = load_saved_run(model_dir)
    if found is None:
        raise FileNotFoundError(
            f"no saved model in '{model_dir}' (expected {Path(model_dir) / MODEL_DIR / 'config.json'}); "
            "run the notebooks (make run-notebooks) or leave --from out to export the best two-tower"
        )
    config = found[0]
    data = load_data(data_dir, dataset=config.dataset)
    split = make_split(data, config.split, config.seed, config.train_fraction)
    model = build_for(config, data, split.train)
    load_model_weights(model, model_dir)
    return model, config, data, split


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--output-dir", type=Path, default=Path("results"), help="where the best model is kept")
    parser.add_argument("--export-dir", type=Path, help="default: <output-dir>/export/twotower[_scann]")
    parser.add_argument("--index", choices=INDEX_KINDS, default="exact")
    parser.add_argument("--version", type=int, help="version folder (default: the next free number)")
    parser.add_argument("--from", dest="source", type=Path, help="export the model saved under this folder instead")
    parser.add_argument(
        "--epochs", type=int, help="epochs of the best model (default: the presets', make tune's choice)"
    )
    parser.add_argument("--data-dir", help="TFDS data folder (default: $TFDS_DATA_DIR)")
    args = parser.parse_args(argv)
    export_dir = args.export_dir or args.output_dir / "export" / (
        "twotower" if args.index == "exact" else "twotower_scann"
    )
    started = time.perf_counter()
    try:
        if args.source:
            model, config, data, split = saved_model(args.source, args.data_dir)
            print(f"exporting the model saved in {args.source / MODEL_DIR}", flush=True)
        else:
            overrides = {} if args.epochs is None else {"epochs": args.epochs}
            print(f"the best two-tower (trained once, kept in {args.output_dir / SERVING_DIR}) ...", flush=True)
            model, config, data, split, loaded = best_model(args.output_dir, args.data_dir, verbose=0, **overrides)
            print(f"  {'loaded' if loaded else 'trained'}", flush=True)
        path = export_model(model, data, split.train, export_dir, args.index, args.version, config)
    except (ConfigError, DataUnavailableError, FileNotFoundError, FileExistsError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"exported ({args.index} index) to {path} in {time.perf_counter() - started:.0f} s")
    print(f"try: python -m twotower_utils recommend --model {export_dir} --user 42")
    return 0


if __name__ == "__main__":
    sys.exit(main())
