"""The MovieLens sets this project knows, and the names of synthetic ones: plain facts, no TensorFlow import
(the config validates ``dataset`` with them).

``DATASETS`` holds what GroupLens publishes about each set (its README); ``movielens`` reads the real sets through
TFDS and ``synthetic`` makes data of a set's shape.  A dataset name is one of ``DATASETS`` (``"100k"``, ``"1m"``,
``"20m"``, ``"25m"``, ``"latest-small"``) or ``"synthetic-<set>"`` / ``"synthetic-<set>-<ratings>"``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class DatasetFacts:
    """What GroupLens publishes about one MovieLens set, used for messages and by ``data.synthetic``."""

    name: str
    ratings: int
    users: int
    rated_movies: int  # movies with at least one rating (the retrieval catalogue)
    catalogue: int  # rows of the movies table
    demographics: bool  # age bucket, gender, occupation, zip code per user
    half_stars: bool  # ratings 0.5..5 in half stars (else whole stars 1..5)
    years: tuple[int, int]  # first and last year of the ratings' timestamps
    archive: str  # GroupLens' zip, the manual download TFDS reads offline
    archive_mb: float

    @property
    def ratings_name(self) -> str:
        return f"movielens/{self.name}-ratings"

    @property
    def movies_name(self) -> str:
        return f"movielens/{self.name}-movies"


DATASETS = {
    facts.name: facts
    for facts in (
        DatasetFacts("100k", 100_000, 943, 1_682, 1_682, True, False, (1997, 1998), "ml-100k.zip", 4.9),
        DatasetFacts("1m", 1_000_209, 6_040, 3_706, 3_883, True, False, (2000, 2003), "ml-1m.zip", 5.9),
        DatasetFacts("20m", 20_000_263, 138_493, 26_744, 27_278, False, True, (1995, 2015), "ml-20m.zip", 198.7),
        DatasetFacts("25m", 25_000_095, 162_541, 59_047, 62_423, False, True, (1995, 2019), "ml-25m.zip", 262.0),
        DatasetFacts("latest-small", 100_836, 610, 9_724, 9_742, False, True, (1996, 2018), "ml-latest-small.zip", 1.0),
    )
}
# each demographic user feature (RunConfig.user_features) and the ratings column it reads
USER_FEATURE_COLUMNS = {
    "age": "bucketized_user_age",
    "gender": "user_gender",
    "occupation": "user_occupation_label",
    "zip": "user_zip_code",
}
DEMOGRAPHIC_COLUMNS = tuple(USER_FEATURE_COLUMNS.values())
DEMOGRAPHIC_SETS = tuple(name for name, facts in DATASETS.items() if facts.demographics)
SYNTHETIC_NAME = re.compile(r"^synthetic-(?P<shape>[a-z0-9-]+?)(?:-(?P<ratings>\d+))?$")


def dataset_facts(name: str) -> DatasetFacts:
    """The facts of a set by name, with one clear error for an unknown name."""
    if name not in DATASETS:
        raise ValueError(f"unknown MovieLens set {name!r}; known sets: {', '.join(DATASETS)}")
    return DATASETS[name]


def parse_synthetic_name(name: str) -> tuple[str, int | None]:
    """``"synthetic-25m"`` -> ``("25m", None)`` (the set's size); ``"synthetic-25m-1000000"`` -> 1M ratings."""
    match = SYNTHETIC_NAME.match(name)
    if not match or match.group("shape") not in DATASETS:
        raise ValueError(
            f"unknown synthetic set {name!r}; write synthetic-<set> or synthetic-<set>-<ratings>, "
            f"<set> one of {', '.join(DATASETS)} (e.g. synthetic-25m-1000000)"
        )
    ratings = match.group("ratings")
    return match.group("shape"), None if ratings is None else int(ratings)


def dataset_shape(name: str) -> str:
    """The real set whose facts a dataset name follows (``"synthetic-25m-1000000"`` -> ``"25m"``, ``"1m"`` ->
    ``"1m"``), or one ValueError listing the choices."""
    if not isinstance(name, str):
        raise ValueError(f"dataset must be a name such as '100k', got {name!r}")
    if name.startswith("synthetic-"):
        return parse_synthetic_name(name)[0]
    return dataset_facts(name).name
