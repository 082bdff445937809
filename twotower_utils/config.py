"""What a run is: the settings every run shares, and its model as one spec of one family.

``RunConfig`` holds the data set, the split, the seed, the optimiser and its schedule, the batch sizes, the
epochs and the ``ks`` of the top-k metrics; its ``model`` is a ``RetrievalSpec`` (the default: the seed report's
two-tower), a ``RatingSpec`` or a ``MultitaskSpec`` (``models.specs``), each with only its own fields.

The run's defaults are the seed report's recipe: Adagrad with learning rate 0.1, batches of 8192, 10 epochs,
evaluation in batches of 4096, and the TFRS tutorial's random 80/20 split (shuffle seed 42).

``replace`` takes the run's fields and its model's by name (``config.replace(epochs=20, embedding_dim=64)``), so a
notebook parameter or a command-line flag reaches the field it sets; a field of another model family is one
``ConfigError`` naming the family that has it.  ``to_dict`` / ``from_dict`` round-trip a run (saved models,
tuning caches); a run saved in an earlier, flat format gives ``RetrainError``.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

from twotower_utils.data.sets import DEMOGRAPHIC_SETS, dataset_shape
from twotower_utils.models.specs import (
    USER_FEATURES,
    ConfigError,
    IdTower,
    ModelSpec,
    MultitaskSpec,
    RatingSpec,
    RetrievalSpec,
    SequenceTower,
    check_int,
    either,
    family_of_field,
    is_int,
    is_number,
    spec_from_dict,
)

OPTIMIZERS = ("adagrad", "adam", "sgd")
SPLITS = ("random", "temporal", "leave_latest", "leave_one_out", "u1")  # u1: 100K's canonical split (GroupLens files)
SCHEDULES = ("constant", "cosine")
FORMAT = 2  # RunConfig.to_dict's layout: 2 = shared run fields + one model spec

__all__ = [
    "ConfigError",
    "IdTower",
    "MultitaskSpec",
    "RatingSpec",
    "RetrainError",
    "RetrievalSpec",
    "RunConfig",
    "SequenceTower",
]


class RetrainError(ConfigError):
    """A saved run (a model folder, a cache) written in an earlier layout: it has to be made again."""


RETRAIN = (
    "was saved by an earlier version of twotower (one flat config for every model): retrain it, i.e. rerun the "
    "command that made it, or delete it"
)


@dataclass(frozen=True)
class RunConfig:
    """The settings every run shares, and ``model``: one spec of one family (see the module docstring)."""

    model: ModelSpec = RetrievalSpec()
    dataset: str = "100k"  # "100k" (the report's), "1m", "20m", "25m", "latest-small", or "synthetic-<set>[-<n>]"
    split: str = "random"
    train_fraction: float = 0.8
    seed: int = 42
    optimizer: str = "adagrad"
    learning_rate: float = 0.1
    learning_rate_schedule: str = "constant"  # "cosine": decay to 0 over all training steps
    batch_size: int = 8192
    eval_batch_size: int = 4096
    epochs: int = 10
    ks: tuple[int, ...] = (1, 5, 10, 50, 100)
    jit_compile: bool = False

    def __init__(self, model: ModelSpec | None = None, **fields: Any) -> None:
        unknown = [n for n in fields if n not in _RUN_FIELDS]
        if unknown:
            raise ConfigError(_not_run_fields(unknown, model))
        object.__setattr__(self, "model", RetrievalSpec() if model is None else model)
        for field in dataclasses.fields(self):
            if field.name != "model":
                object.__setattr__(self, field.name, fields.get(field.name, field.default))
        self.__post_init__()

    def __post_init__(self) -> None:
        object.__setattr__(self, "ks", tuple(self.ks) if isinstance(self.ks, (list, tuple)) else self.ks)
        if not isinstance(self.model, (RetrievalSpec, RatingSpec)):
            raise ConfigError(f"model must be a RetrievalSpec, RatingSpec or MultitaskSpec, got {self.model!r:.80}")
        check_int(self, "epochs", 1, 10_000)
        check_int(self, "batch_size", 1, 1_000_000)
        check_int(self, "eval_batch_size", 1, 1_000_000)
        check_int(self, "seed", 0, 2**31 - 1)
        if not is_number(self.learning_rate) or not self.learning_rate > 0:
            raise ConfigError(f"learning_rate must be a positive number, got {self.learning_rate!r}")
        if not is_number(self.train_fraction) or not 0 < self.train_fraction < 1:
            raise ConfigError(f"train_fraction must lie strictly between 0 and 1, got {self.train_fraction!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.learning_rate_schedule not in SCHEDULES:
            raise ConfigError(f"learning_rate_schedule must be one of {SCHEDULES}, got {self.learning_rate_schedule!r}")
        if self.split not in SPLITS:
            raise ConfigError(f"split must be one of {SPLITS}, got {self.split!r}")
        if not isinstance(self.ks, tuple) or not self.ks or any(not is_int(k) or k < 1 for k in self.ks):
            raise ConfigError(f"ks must be positive whole numbers, got {self.ks!r}")
        if list(self.ks) != sorted(set(self.ks)):
            raise ConfigError(f"ks must be increasing without repeats, got {self.ks!r}")
        if not isinstance(self.jit_compile, bool):
            raise ConfigError(f"jit_compile must be True or False, got {self.jit_compile!r}")
        self._check_dataset()

    def _check_dataset(self) -> None:
        try:
            shape = dataset_shape(self.dataset)
        except ValueError as error:
            raise ConfigError(f"dataset: {error}") from None
        demographic = [f for f in self.model.user_features if f in USER_FEATURES]
        if demographic and shape not in DEMOGRAPHIC_SETS:
            raise ConfigError(
                f"user_features={tuple(demographic)!r} need user demographics, which MovieLens {shape} does not "
                f"have (only {', '.join(DEMOGRAPHIC_SETS)} do); leave user_features empty for dataset={self.dataset!r}"
            )

    @property
    def family(self) -> str:
        """The model's family: "retrieval", "rating" or "multitask"."""
        return self.model.family

    def replace(self, **changes: Any) -> RunConfig:
        """A copy with some settings changed (validated again): the run's fields, ``model=`` a new spec, or the
        model's own fields by name (``user_tower=`` takes a tower spec or a kind's name)."""
        run = {n: v for n, v in changes.items() if n in _RUN_FIELDS}
        model_changes = {n: v for n, v in changes.items() if n not in _RUN_FIELDS and n != "model"}
        model = changes.get("model", self.model)
        if model_changes:
            model = model.replace(**model_changes)
        values = {n: getattr(self, n) for n in _RUN_FIELDS}
        return RunConfig(model, **{**values, **run})

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"format": FORMAT}
        for name in _RUN_FIELDS:
            value = getattr(self, name)
            data[name] = list(value) if isinstance(value, tuple) else value
        data["model"] = self.model.to_dict()
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any], what: str = "this run") -> RunConfig:
        """The run ``to_dict`` wrote.  A mapping of the earlier flat layout is ``RetrainError`` naming ``what``."""
        if not isinstance(data, dict) or data.get("format") != FORMAT or "model" not in data:
            raise RetrainError(f"{what} {RETRAIN}")
        fields = {k: v for k, v in data.items() if k in _RUN_FIELDS}
        return cls(spec_from_dict(data["model"]), **fields)

    def describe(self) -> str:
        """One line: the model's family and what differs from the defaults (the run's and the family's)."""
        default = RunConfig(type(self.model)())
        run = {n: getattr(self, n) for n in _RUN_FIELDS if getattr(self, n) != getattr(default, n)}
        changed = {**run, **self.model.changed()}
        settings = ", ".join(f"{k}={_short(v)}" for k, v in changed.items())
        return f"{self.model.family}({settings})"


_RUN_FIELDS = tuple(f.name for f in dataclasses.fields(RunConfig) if f.name != "model")


def _not_run_fields(names: list[str], model: Any) -> str:
    parts = []
    for name in names:
        owners = [cls.title for cls in family_of_field(name)]
        if name in SequenceTower.field_names():
            owners.append("the sequence user tower (SequenceTower)")
        parts.append(f"{name} is a setting of {either(owners)}" if owners else f"{name} is not a setting")
    return f"{'; '.join(parts)}: pass it on the model spec, e.g. RunConfig(model=RetrievalSpec(...)), or use replace()"


def _short(value: Any) -> str:
    if isinstance(value, (IdTower, SequenceTower)):
        return repr(value)
    return repr(list(value)) if isinstance(value, tuple) else repr(value)
