"""Reusable code for the twotower notebook series.

The package follows the data; a change belongs to the step it changes:

    config                 RunConfig: what every run shares, and its model as one spec (models.specs)
    data/                  MovieLens from TFDS -> splits -> side features, histories -> training pipeline
    models/                towers (id or sequence) -> the two-tower model with its switches -> retrieval losses;
                           rating model, multitask model; specs: one per family, each builds its model
    training               fit, per-epoch top-k curves; on a tf.distribute strategy (distributed: strategies, roles)
    evaluation/            the one counting core -> honest metrics -> baselines; rating RMSE/MAE
    serving/               recommendations for raw ids, the SavedModel export, exact/ScaNN search, its CLI
    experiments/           workflow, dimension sweep, k-fold tuning, notebook 06's comparison, make export,
                           08's multitask sweep, 10's sequence towers
    notebook/              papermill runner, plots, widgets, exploration, embedding analyses
    results                metrics.json, figures and saved models (atomic writes), used by every layer

experiments/ and notebook/ sit on top: nothing below them imports them.  ``python -m twotower_utils``
is the command line (``run``, ``sweep``, ``tune``, ``multitask``, ``sequence``, ``export``, ``recommend``, ``similar``,
``distributed``).

TensorFlow Recommenders 0.7.7 needs Keras 2 (``tf-keras``).  TensorFlow picks its Keras
at first import from ``TF_USE_LEGACY_KERAS``, so this package sets it before anything
imports TensorFlow (tensorflow_datasets imports TensorFlow too).
"""

import importlib.abc
import importlib.util
import os
import sys

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

if "tensorflow" in sys.modules:  # imported before us: check it picked Keras 2
    _keras = getattr(sys.modules["tensorflow"], "keras", None)
    _version = getattr(_keras, "__version__", "2")
    if _version and not str(_version).startswith("2"):
        raise ImportError(
            "TensorFlow was imported with Keras 3 before twotower_utils. Set "
            "TF_USE_LEGACY_KERAS=1 before the first TensorFlow import (the 'twotower' "
            "Jupyter kernel does this), or import twotower_utils first."
        )


class _QuietTensorFlowStart(importlib.abc.MetaPathFinder):
    """When TensorFlow is first imported, filter its start-up noise (``runtime.quiet_device_scan``)."""

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)  # find the real module with the other finders
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None and hasattr(spec.loader, "exec_module"):
            run = spec.loader.exec_module

            def exec_module(module):
                run(module)
                from twotower_utils.runtime import quiet_device_scan

                quiet_device_scan()

            spec.loader.exec_module = exec_module
        return spec


if "tensorflow" in sys.modules:
    from twotower_utils.runtime import quiet_device_scan  # noqa: E402

    quiet_device_scan()
elif not any(isinstance(finder, _QuietTensorFlowStart) for finder in sys.meta_path):
    sys.meta_path.insert(0, _QuietTensorFlowStart())

# The public names below load twotower_utils.config (and with it TensorFlow) on first use, not on
# ``import twotower_utils``: the command line's start (``--help``, argument errors) never needs TensorFlow.
_PUBLIC = (
    "ConfigError",
    "IdTower",
    "MultitaskSpec",
    "RatingSpec",
    "RetrainError",
    "RetrievalSpec",
    "RunConfig",
    "SequenceTower",
)


def __getattr__(name: str):
    if name in _PUBLIC:
        # deferred: TensorFlow is imported with the model specs, only when a name above is first used
        from twotower_utils import config

        return getattr(config, name)
    raise AttributeError(f"module 'twotower_utils' has no attribute {name!r}")


__version__ = "0.1.0"
__all__ = [*_PUBLIC, "__version__"]
