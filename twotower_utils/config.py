"""One object for every experiment parameter, validated once with clear messages."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

OPTIMIZERS = ("adagrad", "adam", "sgd")
SPLITS = ("random", "temporal")


class ConfigError(ValueError):
    """A parameter of the experiment is out of range or of the wrong kind."""


@dataclass(frozen=True)
class ExperimentConfig:
    """Parameters of one two-tower experiment.

    The defaults are the seed report's recipe: 32-d embeddings, Adagrad with learning
    rate 0.1, batches of 8192, 10 epochs, evaluation in batches of 4096, and the TFRS
    tutorial's random 80/20 split (shuffle seed 42).
    """

    embedding_dim: int = 32
    epochs: int = 10
    learning_rate: float = 0.1
    batch_size: int = 8192
    eval_batch_size: int = 4096
    seed: int = 42
    optimizer: str = "adagrad"
    train_fraction: float = 0.8
    split: str = "random"
    ks: tuple[int, ...] = (1, 5, 10, 50, 100)
    metrics_in_training: bool = False
    jit_compile: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "ks", tuple(self.ks))
        _check_int(self, "embedding_dim", 1, 4096)
        _check_int(self, "epochs", 1, 10_000)
        _check_int(self, "batch_size", 1, 1_000_000)
        _check_int(self, "eval_batch_size", 1, 1_000_000)
        _check_int(self, "seed", 0, 2**31 - 1)
        if not _is_number(self.learning_rate) or not self.learning_rate > 0:
            raise ConfigError(f"learning_rate must be a positive number, got {self.learning_rate!r}")
        if not _is_number(self.train_fraction) or not 0 < self.train_fraction < 1:
            raise ConfigError(f"train_fraction must lie strictly between 0 and 1, got {self.train_fraction!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.split not in SPLITS:
            raise ConfigError(f"split must be one of {SPLITS}, got {self.split!r}")
        if not self.ks or any(not _is_int(k) or k < 1 for k in self.ks):
            raise ConfigError(f"ks must be positive whole numbers, got {self.ks!r}")
        if list(self.ks) != sorted(set(self.ks)):
            raise ConfigError(f"ks must be increasing without repeats, got {self.ks!r}")

    def replace(self, **changes: Any) -> ExperimentConfig:
        """A copy with some parameters changed (validated again)."""
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ConfigError(f"unknown parameter(s): {', '.join(sorted(unknown))}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["ks"] = list(self.ks)
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExperimentConfig:
        """Build a config from a mapping, ignoring keys that are not parameters."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_int(config: ExperimentConfig, name: str, low: int, high: int) -> None:
    value = getattr(config, name)
    if not _is_int(value) or not low <= value <= high:
        raise ConfigError(f"{name} must be a whole number from {low} to {high}, got {value!r}")
