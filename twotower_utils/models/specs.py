"""Model specs: one frozen dataclass per model family, holding only that family's settings.

A run (``config.RunConfig``) says what every run shares -- data set, split, seed, optimiser, batches, epochs --
and names its model with one spec:

* ``RetrievalSpec``: the two-tower retrieval model (``two_tower.TwoTowerModel``) with its loss switches and its
  user tower, ``IdTower`` (an embedding per user id, the report's) or ``SequenceTower`` (the user's last movies);
* ``RatingSpec``: the ranking stage's rating model (``ranking.RatingModel``);
* ``MultitaskSpec``: a retrieval spec plus a rating head trained beside it (``multitask.MultitaskModel``).

Each spec validates its own fields and builds its model (``build``); a field of another family is one
``ConfigError`` naming the family that has it.  Building is the spec's job, compiling the run's
(``training.build_for``): the optimiser and the schedule belong to the run.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

import pandas as pd
import tensorflow as tf
import tensorflow_recommenders as tfrs

from twotower_utils.data.features import movie_feature_table, movie_sampling_probability, user_feature_table
from twotower_utils.data.movielens import MovieLens
from twotower_utils.models import towers
from twotower_utils.models.multitask import MultitaskModel, RatingHead
from twotower_utils.models.ranking import RatingModel
from twotower_utils.models.two_tower import TwoTowerModel

USER_FEATURES = ("age", "gender", "occupation", "zip")
MOVIE_FEATURES = ("genres", "year")
NEGATIVES = ("in_batch", "catalogue")
SEQUENCE_KINDS = ("mean", "attention", "gru", "sasrec")
RATING_HEADS = ("mf", "mlp", "dcn")


class ConfigError(ValueError):
    """A parameter of a run or a model is out of range, of the wrong kind, or of another model family."""


class Spec:
    """What every spec shares: ``family``, ``replace``, ``to_dict``, and refusing other families' fields."""

    family: ClassVar[str] = ""
    title: ClassVar[str] = ""  # the family in words, for messages
    sequence: ClassVar[bool] = False  # whether the user tower reads a history (RetrievalSpec overrides it)

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, list):
                object.__setattr__(self, field.name, tuple(value))
        self.validate()

    def validate(self) -> None:
        raise NotImplementedError

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    def replace(self, **changes: Any) -> Spec:
        """A copy with some fields changed (validated again); another family's field is one clear error."""
        refuse_foreign(type(self), changes)
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"family": self.family}
        for name in self.field_names():
            value = getattr(self, name)
            data[name] = value.to_dict() if isinstance(value, (IdTower, SequenceTower)) else _plain(value)
        return data

    def changed(self) -> dict[str, Any]:
        """The fields that differ from the family's defaults (what makes this model more than the default)."""
        default = type(self)()
        return {n: getattr(self, n) for n in self.field_names() if getattr(self, n) != getattr(default, n)}


def strict(cls):
    """Class decorator (after ``@dataclass``): keyword arguments that are not fields are one ``ConfigError``."""
    init = cls.__init__

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        refuse_foreign(cls, kwargs)
        init(self, *args, **kwargs)

    __init__.__doc__ = init.__doc__
    cls.__init__ = __init__
    return cls


def either(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


def refuse_foreign(cls: type, names) -> None:
    """One ``ConfigError`` for the names of ``names`` that are not fields of ``cls``, naming who has them."""
    own = {f.name for f in dataclasses.fields(cls)}
    foreign = [n for n in names if n not in own]
    if not foreign:
        return
    parts = []
    for name in foreign:
        owners = [c.title for c in family_of_field(name) if c is not cls]
        if name in SequenceTower.field_names() and cls is not SequenceTower:
            owners.append("the sequence user tower (SequenceTower)")
        where = f"a setting of {either(owners)}" if owners else "not a setting of any model"
        parts.append(f"{name} is {where}")
    what = getattr(cls, "title", "") or cls.__name__
    raise ConfigError(f"{'; '.join(parts)}, not of {what}")


# ----------------------------------------------------------------------------------------------- user towers


@strict
@dataclass(frozen=True)
class IdTower:
    """The report's user tower: an embedding per user id (``towers.Tower``)."""

    kind: ClassVar[str] = "id"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "id"}


@strict
@dataclass(frozen=True)
class SequenceTower:
    """A user tower that reads the user's last ``history_length`` movies (``towers.SequenceTower``): ``kind``
    "mean" or "attention" pooling, a "gru", or "sasrec" (causal self-attention with positions).  The history's
    movies share the movie tower's embedding table."""

    kind: str = "sasrec"
    history_length: int = 50  # L: the last L movies before each interaction
    use_user_id: bool = False  # add the user-id embedding to the history's summary
    blocks: int = 1  # self-attention blocks (sasrec only)
    dropout: float = 0.0  # dropout on the history's embeddings and inside the blocks

    def __post_init__(self) -> None:
        if self.kind not in SEQUENCE_KINDS:
            raise ConfigError(f"user_tower kind must be one of {SEQUENCE_KINDS}, got {self.kind!r}")
        check_int(self, "history_length", 1, 1000)
        check_int(self, "blocks", 1, 8)
        if not is_number(self.dropout) or not 0 <= self.dropout < 1:
            raise ConfigError(f"dropout must be a number from 0 to below 1, got {self.dropout!r}")
        if not isinstance(self.use_user_id, bool):
            raise ConfigError("use_user_id must be True or False")
        if self.kind != "sasrec" and self.blocks != 1:
            raise ConfigError("blocks: only for the 'sasrec' sequence tower")

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            **{n: getattr(self, n) for n in ("history_length", "use_user_id", "blocks", "dropout")},
        }

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    def replace(self, **changes: Any) -> SequenceTower:
        refuse_foreign(SequenceTower, changes)
        return dataclasses.replace(self, **changes)


def user_tower_from(value: Any) -> IdTower | SequenceTower:
    """A user-tower spec from a spec, its dict (``to_dict``) or a kind's name ("id", "sasrec", ...)."""
    if isinstance(value, (IdTower, SequenceTower)):
        return value
    if isinstance(value, str):
        value = {"kind": value}
    if not isinstance(value, dict) or "kind" not in value:
        raise ConfigError(f"user_tower must be IdTower(), SequenceTower(...), or a kind's name; got {value!r}")
    fields = {k: v for k, v in value.items() if k != "kind"}
    if value["kind"] == "id":
        if fields:
            raise ConfigError(f"{', '.join(sorted(fields))}: only for a sequence user tower, not the id tower")
        return IdTower()
    return SequenceTower(kind=value["kind"], **fields)


# ----------------------------------------------------------------------------------------------- retrieval


@strict
@dataclass(frozen=True)
class RetrievalSpec(Spec):
    """The two-tower retrieval model: ``score(user, movie) = <user tower(user), movie tower(movie)>``.

    The defaults are the seed report's: 32-d bare embedding tables and ``tfrs.tasks.Retrieval``'s in-batch
    softmax.  The switches (all off by default) act in the towers (side features, hidden layers, L2-normalised
    outputs, an L2 penalty on the looked-up rows) and in the loss (logQ correction, accidental hits removed,
    a temperature, catalogue negatives).
    """

    family: ClassVar[str] = "retrieval"
    title: ClassVar[str] = "the retrieval model (RetrievalSpec)"

    embedding_dim: int = 32
    user_tower: IdTower | SequenceTower = IdTower()
    user_features: tuple[str, ...] = ()  # side features of the user tower, from USER_FEATURES
    movie_features: tuple[str, ...] = ()  # side features of the movie tower, from MOVIE_FEATURES
    tower_layers: tuple[int, ...] = ()  # hidden Dense(relu) sizes before each tower's output layer
    normalize_embeddings: bool = False  # L2-normalise both towers' outputs (cosine scores)
    l2_regularization: float = 0.0  # L2 penalty on the embedding tables (per looked-up row)
    logq_correction: float = 0.0  # subtract this times log(training frequency) of each in-batch candidate
    remove_accidental_hits: bool = False  # a batch's other copies of the positive movie are no negatives
    temperature: float = 1.0  # logits divided by this
    negatives: str = "in_batch"  # "in_batch" (TFRS Retrieval) or "catalogue" (full softmax over every movie)
    metrics_in_training: bool = False  # TFRS's FactorizedTopK inside training (slow; the curves do it per epoch)

    def __post_init__(self) -> None:
        object.__setattr__(self, "user_tower", user_tower_from(self.user_tower))
        super().__post_init__()

    def validate(self) -> None:
        check_int(self, "embedding_dim", 1, 4096)
        check_features(self)
        check_layers(self, "tower_layers")
        if not is_number(self.logq_correction) or not 0 <= self.logq_correction <= 2:
            raise ConfigError(f"logq_correction must be a number from 0 (off) to 2, got {self.logq_correction!r}")
        if not is_number(self.temperature) or not self.temperature > 0:
            raise ConfigError(f"temperature must be a positive number, got {self.temperature!r}")
        check_number(self, "l2_regularization", 0, 1e6)
        if self.negatives not in NEGATIVES:
            raise ConfigError(f"negatives must be one of {NEGATIVES}, got {self.negatives!r}")
        for name in ("normalize_embeddings", "remove_accidental_hits", "metrics_in_training"):
            check_bool(self, name)
        if self.sequence:
            clash = [n for n in ("user_features", "tower_layers") if getattr(self, n)]
            if clash:
                raise ConfigError(f"{', '.join(clash)}: not available with a sequence user tower")

    def replace(self, **changes: Any) -> RetrievalSpec:
        """``Spec.replace``; the sequence tower's own fields (``history_length``, ``dropout``, ...) reach the user
        tower (``replace(user_tower="sasrec", history_length=20)``)."""
        tower_fields = {
            n: v for n, v in changes.items() if n in SequenceTower.field_names() and n not in self.field_names()
        }
        if tower_fields:
            tower = user_tower_from(changes.get("user_tower", self.user_tower))
            if not isinstance(tower, SequenceTower):
                raise ConfigError(f"{', '.join(tower_fields)}: only for a sequence user tower, not the id tower")
            changes = {n: v for n, v in changes.items() if n not in tower_fields}
            changes["user_tower"] = tower.replace(**tower_fields)
        return super().replace(**changes)

    @property
    def sequence(self) -> bool:
        """Whether the user tower reads a history (what the training batches must carry)."""
        return isinstance(self.user_tower, SequenceTower)

    @property
    def history_length(self) -> int | None:
        return self.user_tower.history_length if self.sequence else None

    def build_towers(self, data: MovieLens) -> tuple[towers.Tower | towers.SequenceTower, towers.Tower]:
        """The user tower and the movie tower, their weights built (in the report's order: the same seed gives
        the same towers as the report's)."""
        common = {"layers": self.tower_layers, "normalize": self.normalize_embeddings, "l2": self.l2_regularization}
        user_side = user_feature_table(data, self.user_features) if self.user_features else None
        movie_side = movie_feature_table(data, self.movie_features) if self.movie_features else None
        dim = self.embedding_dim
        if not self.sequence:
            user_tower = towers.Tower(data.user_vocabulary, dim, user_side, name="user_tower", **common)
            movie_tower = towers.Tower(data.movie_vocabulary, dim, movie_side, name="movie_tower", **common)
            for tower in (user_tower, movie_tower):
                tower(tf.constant([0], dtype=tf.int64))  # build the weights so parameters can be counted
            return user_tower, movie_tower
        movie_tower = towers.Tower(data.movie_vocabulary, dim, movie_side, name="movie_tower", **common)
        movie_tower(tf.constant([0], dtype=tf.int64))
        spec = self.user_tower
        user_tower = towers.SequenceTower(
            spec.kind,
            movie_tower.embedding,  # the history's movies share the movie tower's table
            dim,
            spec.history_length,
            num_users=data.num_users,
            use_user_id=spec.use_user_id,
            blocks=spec.blocks,
            dropout=spec.dropout,
            normalize=self.normalize_embeddings,
            name="user_tower",
        )
        user_tower({"user_id": tf.constant([0], tf.int64), "history": tf.zeros((1, spec.history_length), tf.int64)})
        return user_tower, movie_tower

    def retrieval_task(self, data: MovieLens, movie_tower: towers.Tower, ks) -> tfrs.tasks.Retrieval:
        """``tfrs.tasks.Retrieval`` with ``FactorizedTopK`` over every movie title (at ``ks``) as its metric."""
        candidates = tf.data.Dataset.from_tensor_slices(data.movie_vocabulary).batch(128).map(movie_tower)
        return tfrs.tasks.Retrieval(
            metrics=tfrs.metrics.FactorizedTopK(candidates=candidates, ks=tuple(ks)),
            temperature=None if self.temperature == 1.0 else self.temperature,
            remove_accidental_hits=self.remove_accidental_hits,
        )

    def loss_switches(self, data: MovieLens, train_frame: pd.DataFrame | None) -> dict[str, Any]:
        """``TwoTowerModel``'s keyword arguments for this spec's loss."""
        probability = movie_sampling_probability(data, train_frame) if self.logq_correction else None
        return {
            "logq_correction": self.logq_correction,
            "sampling_probability": probability,
            "remove_accidental_hits": self.remove_accidental_hits,
            "temperature": self.temperature,
            "catalogue_negatives": self.negatives == "catalogue",
            "metrics_in_training": self.metrics_in_training,
        }

    def build(self, data: MovieLens, train_frame: pd.DataFrame | None = None, ks=(1, 5, 10, 50, 100)) -> TwoTowerModel:
        """The (uncompiled) two-tower model; ``train_frame`` (default: every rating) gives logQ's probabilities."""
        user_tower, movie_tower = self.build_towers(data)
        task = self.retrieval_task(data, movie_tower, ks)
        return TwoTowerModel(user_tower, movie_tower, task, **self.loss_switches(data, train_frame))


# ----------------------------------------------------------------------------------------------- rating


@strict
@dataclass(frozen=True)
class RatingSpec(Spec):
    """The ranking stage's rating model: ``rating = mu + b_user + b_movie + <u, m> [+ a deep part]`` trained with
    ``tfrs.tasks.Ranking`` (``ranking.RatingModel``).  ``head`` "mf" is biases + dot product; "mlp" / "dcn" add an
    MLP or a DCN over ``[u, m, u * m, side features]``."""

    family: ClassVar[str] = "rating"
    title: ClassVar[str] = "the rating model (RatingSpec)"

    head: str = "mf"
    embedding_dim: int = 32
    l2_regularization: float = 0.0  # L2 penalty on the looked-up embedding rows (per rating)
    bias_l2: float = 0.0  # L2 penalty on the looked-up user and movie bias rows (per rating)
    implicit_feedback: bool = False  # SVD++: the user vector adds the mean of the user's training movies' vectors
    user_features: tuple[str, ...] = ()  # side features read by the deep part
    movie_features: tuple[str, ...] = ()
    ranking_layers: tuple[int, ...] = (64,)  # hidden Dense(relu) sizes of the deep part (mlp, dcn)
    cross_layers: int = 1  # DCN cross layers (tfrs.layers.dcn.Cross) before the hidden layers (dcn)
    ranking_l2: float = 0.0  # L2 penalty on the deep part's weights (once per batch, as Keras regularisers)

    def validate(self) -> None:
        if self.head not in RATING_HEADS:
            raise ConfigError(f"head must be one of {RATING_HEADS}, got {self.head!r}")
        check_int(self, "embedding_dim", 1, 4096)
        check_layers(self, "ranking_layers")
        check_int(self, "cross_layers", 0, 16)
        for name in ("l2_regularization", "ranking_l2", "bias_l2"):
            check_number(self, name, 0, 1e6)
        check_bool(self, "implicit_feedback")
        check_features(self)

    def build(self, data: MovieLens, train_frame: pd.DataFrame | None = None, ks=None) -> RatingModel:
        """The (uncompiled) rating model, its weights built; ``train_frame`` (default: every rating) gives ``mu``
        and the implicit-feedback matrix.  ``ks`` is unused (a rating model has no top-k metric)."""
        frame = data.ratings if train_frame is None else train_frame
        if "user_rating" not in frame.columns:
            raise ValueError("the rating model needs a 'user_rating' column in the training frame")
        model = RatingModel(
            data,
            frame,
            head=self.head,
            embedding_dim=self.embedding_dim,
            l2=self.l2_regularization,
            bias_l2=self.bias_l2,
            implicit_feedback=self.implicit_feedback,
            user_side=user_feature_table(data, self.user_features) if self.user_features else None,
            movie_side=movie_feature_table(data, self.movie_features) if self.movie_features else None,
            layers=self.ranking_layers,
            cross_layers=self.cross_layers,
            layers_l2=self.ranking_l2,
        )
        model({"user_id": tf.constant([0], tf.int64), "movie_title": tf.constant([0], tf.int64)})  # build the weights
        return model


# ----------------------------------------------------------------------------------------------- multitask


@strict
@dataclass(frozen=True)
class MultitaskSpec(RetrievalSpec):
    """The retrieval model with a rating head on the same towers (``multitask.MultitaskModel``):
    ``loss = retrieval_weight * retrieval + rating_weight * rating`` (both summed over the batch)."""

    family: ClassVar[str] = "multitask"
    title: ClassVar[str] = "the multitask model (MultitaskSpec)"

    retrieval_weight: float = 1.0  # 0: rating-only
    rating_weight: float = 1.0  # 0: retrieval-only (the head is built but never trained)
    rating_layers: tuple[int, ...] = (64,)  # hidden Dense(relu) sizes of the rating head
    rating_stop_gradient: bool = False  # the rating head reads the embeddings without training them
    rating_l2: float = 0.0  # L2 penalty on the rating head's weights and looked-up bias rows

    def validate(self) -> None:
        super().validate()
        if self.sequence:
            raise ConfigError("user_tower: the multitask model has the id user tower only")
        for name in ("retrieval_weight", "rating_weight", "rating_l2"):
            check_number(self, name, 0, 1e6)
        check_layers(self, "rating_layers")
        check_bool(self, "rating_stop_gradient")
        if self.retrieval_weight == 0 and self.rating_weight == 0:
            raise ConfigError("retrieval_weight and rating_weight cannot both be 0: nothing would be trained")
        if self.rating_stop_gradient and self.retrieval_weight == 0:
            raise ConfigError("rating_stop_gradient with retrieval_weight 0 would train no embedding at all")

    def build(self, data: MovieLens, train_frame: pd.DataFrame | None = None, ks=(1, 5, 10, 50, 100)) -> MultitaskModel:
        """The (uncompiled) multitask model: the towers and the retrieval task as ``RetrievalSpec.build`` makes
        them (same seed, same initial towers), then the rating head, its global mean from ``train_frame``."""
        frame = data.ratings if train_frame is None else train_frame
        if "user_rating" not in frame.columns:
            raise ValueError("the rating task needs a 'user_rating' column in the training frame")
        user_tower, movie_tower = self.build_towers(data)
        task = self.retrieval_task(data, movie_tower, ks)
        head = RatingHead(
            data.num_users,
            data.num_movies,
            self.rating_layers,
            global_mean=float(frame["user_rating"].mean()),
            l2=self.rating_l2,
            name="rating_head",
        )
        return MultitaskModel(
            user_tower,
            movie_tower,
            task,
            head,
            retrieval_weight=self.retrieval_weight,
            rating_weight=self.rating_weight,
            stop_gradient=self.rating_stop_gradient,
            **self.loss_switches(data, train_frame),
        )


SPECS: dict[str, type[Spec]] = {s.family: s for s in (RetrievalSpec, RatingSpec, MultitaskSpec)}
ModelSpec = RetrievalSpec | RatingSpec | MultitaskSpec


def spec_from_dict(data: dict[str, Any]) -> ModelSpec:
    """A spec from ``Spec.to_dict``'s mapping (its ``family`` names the class)."""
    if not isinstance(data, dict) or data.get("family") not in SPECS:
        raise ConfigError(f"a model spec needs a 'family' of {tuple(SPECS)}, got {data!r:.80}")
    return SPECS[data["family"]](**{k: v for k, v in data.items() if k != "family"})


def family_of_field(name: str) -> list[type[Spec]]:
    """The spec classes that have a field called ``name``."""
    return [cls for cls in SPECS.values() if name in cls.field_names()]


# ----------------------------------------------------------------------------------------------- validation


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_int(obj: Any, name: str, low: int, high: int) -> None:
    value = getattr(obj, name)
    if not is_int(value) or not low <= value <= high:
        raise ConfigError(f"{name} must be a whole number from {low} to {high}, got {value!r}")


def check_number(obj: Any, name: str, low: float, high: float) -> None:
    value = getattr(obj, name)
    if not is_number(value) or not low <= value <= high:
        raise ConfigError(f"{name} must be a number from {low:g} to {high:g}, got {value!r}")


def check_bool(obj: Any, name: str) -> None:
    if not isinstance(getattr(obj, name), bool):
        raise ConfigError(f"{name} must be True or False, got {getattr(obj, name)!r}")


def check_layers(obj: Any, name: str) -> None:
    value = getattr(obj, name)
    if not isinstance(value, tuple) or any(not is_int(n) or not 1 <= n <= 4096 for n in value):
        raise ConfigError(f"{name} must be whole numbers from 1 to 4096, got {value!r}")


def check_features(obj: Any) -> None:
    for name, allowed in (("user_features", USER_FEATURES), ("movie_features", MOVIE_FEATURES)):
        chosen = getattr(obj, name)
        if not isinstance(chosen, tuple) or any(f not in allowed for f in chosen) or len(set(chosen)) != len(chosen):
            raise ConfigError(f"{name} must be distinct names from {allowed}, got {chosen!r}")


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value
