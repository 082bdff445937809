"""One object for every experiment parameter, validated once with clear messages."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

OPTIMIZERS = ("adagrad", "adam", "sgd")
SPLITS = ("random", "temporal", "leave_latest", "leave_one_out")
USER_FEATURES = ("age", "gender", "occupation", "zip")
MOVIE_FEATURES = ("genres", "year")
NEGATIVES = ("in_batch", "catalogue")
SCHEDULES = ("constant", "cosine")
RANKING_HEADS = ("none", "mf", "mlp", "dcn")
TUPLE_FIELDS = ("ks", "user_features", "movie_features", "tower_layers", "rating_layers", "ranking_layers")
MULTITASK_FIELDS = ("retrieval_weight", "rating_weight", "rating_layers", "rating_stop_gradient", "rating_l2")
USER_TOWERS = ("id", "mean", "attention", "gru", "sasrec")
# Sequence user towers (issue 13, notebook 10): the user tower reads the user's last movies
SEQUENCE_FIELDS = ("history_length", "use_user_id", "sequence_blocks", "sequence_dropout")
RANKING_FIELDS = ("ranking_layers", "cross_layers", "implicit_feedback", "ranking_l2", "bias_l2")
# Retrieval-only switches that mean nothing to the rating model (refused with ranking_head, not silently ignored)
RETRIEVAL_ONLY_FIELDS = (
    "logq_correction",
    "remove_accidental_hits",
    "temperature",
    "normalize_embeddings",
    "tower_layers",
    "negatives",
    "rating_task",
    "metrics_in_training",
)


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
    learning_rate_schedule: str = "constant"  # "cosine": decay to 0 over all training steps
    train_fraction: float = 0.8
    split: str = "random"
    ks: tuple[int, ...] = (1, 5, 10, 50, 100)
    metrics_in_training: bool = False
    jit_compile: bool = False
    # The MovieLens set (issue 14): "100k" (the report's), "1m", "20m", "25m", "latest-small" through TFDS, or a
    # synthetic set of a set's shape, "synthetic-<set>[-<ratings>]" (data.synthetic), e.g. "synthetic-25m-1000000"
    dataset: str = "100k"
    # Two-tower switches (issue 4); every default keeps the report's recipe.
    logq_correction: float = 0.0  # subtract this times log(training frequency) of each in-batch candidate
    remove_accidental_hits: bool = False  # a batch's other copies of the positive movie are no negatives
    temperature: float = 1.0  # logits divided by this
    normalize_embeddings: bool = False  # L2-normalise both towers' outputs (cosine scores)
    l2_regularization: float = 0.0  # L2 penalty on the embedding tables (per looked-up row)
    user_features: tuple[str, ...] = ()  # side features of the user tower, from USER_FEATURES
    movie_features: tuple[str, ...] = ()  # side features of the movie tower, from MOVIE_FEATURES
    tower_layers: tuple[int, ...] = ()  # hidden Dense(relu) sizes before each tower's output layer
    negatives: str = "in_batch"  # "in_batch" (TFRS Retrieval) or "catalogue" (full softmax over every movie)
    # Multitask (issue 10, notebook 08): a rating head on the same towers; loss = w_retrieval * retrieval + w_rating
    # * rating (both summed over the batch).  Off by default: the two-tower retrieval model alone.
    rating_task: bool = False  # add the rating task (models.multitask.MultitaskModel)
    retrieval_weight: float = 1.0  # w_retrieval (0: rating-only); only with rating_task
    rating_weight: float = (
        1.0  # w_rating (0: retrieval-only, the head is built but never trained); only with rating_task
    )
    rating_layers: tuple[int, ...] = (64,)  # hidden Dense(relu) sizes of the rating head; only with rating_task
    rating_stop_gradient: bool = False  # the rating head reads the embeddings without training them
    rating_l2: float = 0.0  # L2 penalty on the rating head's weights and looked-up bias rows; only with rating_task
    # The ranking stage's rating model (issue 10, notebook 07): rating = mu + b_user + b_movie + <u, m> [+ a deep part
    # over [u, m, u * m, side features]], trained with tfrs.tasks.Ranking.  "none": the retrieval model instead.
    ranking_head: str = "none"  # "mf" (biases + dot product), "mlp" / "dcn" (mf plus an MLP or a DCN on top)
    ranking_layers: tuple[int, ...] = (64,)  # hidden Dense(relu) sizes of the deep part (mlp, dcn)
    cross_layers: int = 1  # DCN cross layers (tfrs.layers.dcn.Cross) before the hidden layers (dcn)
    implicit_feedback: bool = False  # SVD++: the user vector adds the mean of the user's training movies' vectors
    ranking_l2: float = 0.0  # L2 penalty on the deep part's weights (once per batch, as Keras regularisers)
    bias_l2: float = 0.0  # L2 penalty on the looked-up user and movie bias rows (per rating, as the embedding L2)
    # The user tower (issue 13, notebook 10): "id" (an embedding per user id, the report's) or a sequence tower
    # that reads the user's last ``history_length`` movies (models.towers.SequenceTower): "mean" or "attention"
    # pooling, a "gru", or "sasrec" (causal self-attention with positions).  The history's movies share the
    # movie tower's embedding table.
    user_tower: str = "id"
    history_length: int = 50  # L: the last L movies before each interaction (sequence towers)
    use_user_id: bool = False  # add the user-id embedding to the history's summary (sequence towers)
    sequence_blocks: int = 1  # self-attention blocks (sasrec)
    sequence_dropout: float = 0.0  # dropout on the history's embeddings and inside the blocks (sequence towers)

    def __post_init__(self) -> None:
        for name in TUPLE_FIELDS:
            object.__setattr__(self, name, tuple(getattr(self, name)))
        _check_int(self, "embedding_dim", 1, 4096)
        _check_int(self, "epochs", 1, 10_000)
        _check_int(self, "batch_size", 1, 1_000_000)
        _check_int(self, "eval_batch_size", 1, 1_000_000)
        _check_int(self, "seed", 0, 2**31 - 1)
        self._check_dataset()
        if not _is_number(self.learning_rate) or not self.learning_rate > 0:
            raise ConfigError(f"learning_rate must be a positive number, got {self.learning_rate!r}")
        if not _is_number(self.train_fraction) or not 0 < self.train_fraction < 1:
            raise ConfigError(f"train_fraction must lie strictly between 0 and 1, got {self.train_fraction!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.learning_rate_schedule not in SCHEDULES:
            raise ConfigError(f"learning_rate_schedule must be one of {SCHEDULES}, got {self.learning_rate_schedule!r}")
        if self.split not in SPLITS:
            raise ConfigError(f"split must be one of {SPLITS}, got {self.split!r}")
        if not self.ks or any(not _is_int(k) or k < 1 for k in self.ks):
            raise ConfigError(f"ks must be positive whole numbers, got {self.ks!r}")
        if list(self.ks) != sorted(set(self.ks)):
            raise ConfigError(f"ks must be increasing without repeats, got {self.ks!r}")
        if not _is_number(self.logq_correction) or not 0 <= self.logq_correction <= 2:
            raise ConfigError(f"logq_correction must be a number from 0 (off) to 2, got {self.logq_correction!r}")
        if not _is_number(self.temperature) or not self.temperature > 0:
            raise ConfigError(f"temperature must be a positive number, got {self.temperature!r}")
        if not _is_number(self.l2_regularization) or self.l2_regularization < 0:
            raise ConfigError(f"l2_regularization must be a number >= 0, got {self.l2_regularization!r}")
        for name, allowed in (("user_features", USER_FEATURES), ("movie_features", MOVIE_FEATURES)):
            chosen = getattr(self, name)
            if any(f not in allowed for f in chosen) or len(set(chosen)) != len(chosen):
                raise ConfigError(f"{name} must be distinct names from {allowed}, got {chosen!r}")
        if self.negatives not in NEGATIVES:
            raise ConfigError(f"negatives must be one of {NEGATIVES}, got {self.negatives!r}")
        if any(not _is_int(n) or not 1 <= n <= 4096 for n in self.tower_layers):
            raise ConfigError(f"tower_layers must be whole numbers from 1 to 4096, got {self.tower_layers!r}")
        self._check_multitask()
        self._check_ranking()
        self._check_sequence()

    def _check_dataset(self) -> None:
        from twotower_utils.data.sets import DEMOGRAPHIC_SETS, dataset_shape

        try:
            shape = dataset_shape(self.dataset)
        except ValueError as error:
            raise ConfigError(f"dataset: {error}") from None
        demographic = [f for f in self.user_features if f in USER_FEATURES]
        if demographic and shape not in DEMOGRAPHIC_SETS:
            raise ConfigError(
                f"user_features={tuple(demographic)!r} need user demographics, which MovieLens {shape} does not "
                f"have (only {', '.join(DEMOGRAPHIC_SETS)} do); leave user_features empty for dataset={self.dataset!r}"
            )

    def _check_sequence(self) -> None:
        if self.user_tower not in USER_TOWERS:
            raise ConfigError(f"user_tower must be one of {USER_TOWERS}, got {self.user_tower!r}")
        _check_int(self, "history_length", 1, 1000)
        _check_int(self, "sequence_blocks", 1, 8)
        if not _is_number(self.sequence_dropout) or not 0 <= self.sequence_dropout < 1:
            raise ConfigError(f"sequence_dropout must be a number from 0 to below 1, got {self.sequence_dropout!r}")
        if not isinstance(self.use_user_id, bool):
            raise ConfigError("use_user_id must be True or False")
        if self.user_tower == "id":
            changed = _changed_fields(self, SEQUENCE_FIELDS)
            if changed:
                raise ConfigError(
                    f"{', '.join(changed)}: only for a sequence user tower (user_tower={USER_TOWERS[1:]})"
                )
        else:
            clash = _changed_fields(self, ("user_features", "tower_layers"))
            clash += [n for n in ("rating_task",) if getattr(self, n)]
            clash += ["ranking_head"] if self.ranking_head != "none" else []
            if clash:
                raise ConfigError(f"{', '.join(clash)}: not available with a sequence user tower ({self.user_tower!r})")
            if self.user_tower != "sasrec" and _changed_fields(self, ("sequence_blocks",)):
                raise ConfigError("sequence_blocks: only for user_tower='sasrec'")

    def _check_ranking(self) -> None:
        if self.ranking_head not in RANKING_HEADS:
            raise ConfigError(f"ranking_head must be one of {RANKING_HEADS}, got {self.ranking_head!r}")
        if any(not _is_int(n) or not 1 <= n <= 4096 for n in self.ranking_layers):
            raise ConfigError(f"ranking_layers must be whole numbers from 1 to 4096, got {self.ranking_layers!r}")
        _check_int(self, "cross_layers", 0, 16)
        for name in ("ranking_l2", "bias_l2"):
            value = getattr(self, name)
            if not _is_number(value) or not 0 <= value <= 1e6:
                raise ConfigError(f"{name} must be a number from 0 to 1e6, got {value!r}")
        if not isinstance(self.implicit_feedback, bool):
            raise ConfigError("implicit_feedback must be True or False")
        if self.ranking_head == "none":
            changed = _changed_fields(self, RANKING_FIELDS)
            if changed:
                raise ConfigError(
                    f"{', '.join(changed)}: only for the rating model (ranking_head='mf', 'mlp' or 'dcn')"
                )
        else:
            changed = _changed_fields(self, RETRIEVAL_ONLY_FIELDS)
            if changed:
                raise ConfigError(f"{', '.join(changed)}: retrieval switches, not for the rating model (ranking_head)")

    def _check_multitask(self) -> None:
        for name in ("retrieval_weight", "rating_weight", "rating_l2"):
            value = getattr(self, name)
            if not _is_number(value) or not 0 <= value <= 1e6:
                raise ConfigError(f"{name} must be a number from 0 to 1e6, got {value!r}")
        if any(not _is_int(n) or not 1 <= n <= 4096 for n in self.rating_layers):
            raise ConfigError(f"rating_layers must be whole numbers from 1 to 4096, got {self.rating_layers!r}")
        if not isinstance(self.rating_task, bool) or not isinstance(self.rating_stop_gradient, bool):
            raise ConfigError("rating_task and rating_stop_gradient must be True or False")
        if not self.rating_task:
            changed = _changed_fields(self, MULTITASK_FIELDS)
            if changed:
                raise ConfigError(f"{', '.join(changed)}: only for the multitask model (rating_task=True)")
        elif self.retrieval_weight == 0 and self.rating_weight == 0:
            raise ConfigError("retrieval_weight and rating_weight cannot both be 0: nothing would be trained")
        elif self.rating_stop_gradient and self.retrieval_weight == 0:
            raise ConfigError("rating_stop_gradient with retrieval_weight 0 would train no embedding at all")

    def replace(self, **changes: Any) -> ExperimentConfig:
        """A copy with some parameters changed (validated again)."""
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ConfigError(f"unknown parameter(s): {', '.join(sorted(unknown))}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        for name in TUPLE_FIELDS:
            data[name] = list(getattr(self, name))
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


def _changed_fields(config: ExperimentConfig, names) -> list[str]:
    """Those of ``names`` whose value differs from the field's default (a switch set where it has no effect)."""
    fields = ExperimentConfig.__dataclass_fields__
    return [name for name in names if getattr(config, name) != fields[name].default]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_int(config: ExperimentConfig, name: str, low: int, high: int) -> None:
    value = getattr(config, name)
    if not _is_int(value) or not low <= value <= high:
        raise ConfigError(f"{name} must be a whole number from {low} to {high}, got {value!r}")
