"""Loading an export (``export.export_model``'s version folders) for querying: find the version folder, read
its metadata, check that every file can be read, load the SavedModel and check that it is a twotower export.

This module imports TensorFlow only when a model is loaded, so a command line can check its input, and say
what is wrong with a model directory, before paying for that import.  ``ExportError`` is the one error it
raises for a model directory that is missing, unreadable, damaged or not a twotower export.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

METADATA_PATH = Path("assets.extra") / "twotower.json"
SIGNATURES = ("serving_default", "recommend_including_seen", "similar_movies")
HOW_TO_EXPORT = "make one with `make export` (or `python -m twotower_utils export --export-dir DIR`)"
# what each signature takes and returns (k is a scalar, the rest are batches)
SIGNATURE_INPUTS = {
    "serving_default": {"user_id", "k"},
    "recommend_including_seen": {"user_id", "k"},
    "similar_movies": {"title", "k"},
}
SIGNATURE_OUTPUTS = {
    "serving_default": {"movie_titles", "scores", "cold_start"},
    "recommend_including_seen": {"movie_titles", "scores", "cold_start"},
    "similar_movies": {"similar_titles", "scores", "unknown_title"},
}


class ExportError(Exception):
    """The export directory is missing, unreadable, holds no exported model, or the model cannot be loaded."""


def _unreadable(error: OSError, path: Path) -> ExportError:
    where = error.filename or path
    return ExportError(f"cannot read '{where}': {error.strerror or error} (the model directory must be readable)")


def resolve_export(path: str | os.PathLike) -> Path:
    """The version folder to load: ``path`` itself if it holds ``saved_model.pb``, otherwise its highest
    numbered version (as TF Serving picks).  ``ExportError`` says what is missing and how to make one."""
    path = Path(path)
    try:
        if not path.exists():
            raise ExportError(f"model directory '{path}' does not exist; {HOW_TO_EXPORT}")
        if not path.is_dir():
            raise ExportError(f"'{path}' is a file, not a model directory; {HOW_TO_EXPORT}")
        names = os.listdir(path)  # first, so that an unreadable folder is named as such
        if "saved_model.pb" in names and (path / "saved_model.pb").is_file():
            return path
        versions = sorted(
            (path / n for n in names if n.isdigit() and (path / n / "saved_model.pb").is_file()), key=_num
        )
    except OSError as error:  # a folder this user may not list or enter (chmod 000, another owner)
        raise _unreadable(error, path) from None
    if not versions:
        raise ExportError(
            f"'{path}' holds no exported model (no saved_model.pb in it or in a numbered version folder); "
            f"{HOW_TO_EXPORT}"
        )
    return versions[-1]


def _num(path: Path) -> int:
    return int(path.name)


def read_metadata(version_dir: Path) -> dict:
    """What ``export_model`` recorded next to the SavedModel (``{}`` for a SavedModel made elsewhere)."""
    path = Path(version_dir) / METADATA_PATH
    try:
        if not path.is_file():
            return {}
        metadata = json.loads(path.read_text())
    except OSError as error:
        raise _unreadable(error, path) from None
    except ValueError as error:
        raise ExportError(f"cannot read {path}: {error}") from None
    if not isinstance(metadata, dict):
        raise ExportError(f"cannot read {path}: not a JSON object")
    return metadata


def check_readable(version_dir: Path) -> None:
    """Every folder of the version can be listed and every file opened; TensorFlow would report an unreadable
    ``variables/`` as 'Failed to find any matching files'."""
    version_dir = Path(version_dir)

    def fail(error: OSError):
        raise _unreadable(error, version_dir)

    try:
        for folder, _, files in os.walk(version_dir, onerror=fail):
            for name in files:
                with open(os.path.join(folder, name), "rb"):
                    pass
    except OSError as error:
        raise _unreadable(error, version_dir) from None


@dataclass
class LoadedModel:
    """A loaded export: the SavedModel object, its folder and metadata."""

    model: object
    path: Path
    metadata: dict

    @property
    def num_movies(self) -> int:
        return int(self.metadata.get("num_movies") or (int(self.model.titles.shape[0]) - 1))

    def titles(self) -> list[str]:
        return [t.decode() for t in self.model.titles.numpy()[1:]]

    def recommend(self, user_ids, k: int = 10, include_seen: bool = False) -> dict:
        import tensorflow as tf

        _check_k(k)
        name = "recommend_including_seen" if include_seen else "serving_default"
        users = tf.constant(list(user_ids), tf.string)
        out = self.model.signatures[name](user_id=users, k=tf.constant(k, tf.int32))
        return {key: value.numpy() for key, value in out.items()}

    def similar(self, titles, k: int = 10) -> dict:
        import tensorflow as tf

        _check_k(k)
        titles = tf.constant(list(titles), tf.string)
        out = self.model.signatures["similar_movies"](title=titles, k=tf.constant(k, tf.int32))
        return {key: value.numpy() for key, value in out.items()}


def _check_k(k) -> None:
    """The SavedModel refuses ``k < 1`` too, but its message starts with 'Graph execution error' and the node's
    stack; this one is the first line."""
    if int(k) < 1:
        import tensorflow as tf

        raise tf.errors.InvalidArgumentError(None, None, f"k must be at least 1, got {int(k)}")


def result_rows(ids, titles, scores, key: str = "user_id") -> list[dict]:
    """One row per (id, rank, title, score) of a signature's output, empty slots left out."""
    return [
        {key: str(name), "rank": rank, "movie_title": title.decode(), "score": float(score)}
        for name, row_titles, row_scores in zip(ids, titles, scores, strict=True)
        for rank, (title, score) in enumerate(zip(row_titles, row_scores, strict=True), 1)
        if title
    ]


def load_export(path: str | os.PathLike) -> LoadedModel:
    """Load an export (a version folder or the folder of versions); ``ExportError`` if it cannot be."""
    version_dir = resolve_export(path)
    metadata = read_metadata(version_dir)
    check_readable(version_dir)
    if metadata.get("index") == "scann":
        try:
            import scann  # noqa: F401  (registers the Scann ops the SavedModel uses)
        except ImportError:
            raise ExportError(
                f"'{version_dir}' uses a ScaNN index and ScaNN is not installed: pip install 'scann==1.4.2'"
            ) from None
    import tensorflow as tf

    try:
        model = tf.saved_model.load(str(version_dir))
    except Exception as error:  # a damaged or foreign SavedModel: one line, not TensorFlow's stack
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ExportError(f"could not load the model in '{version_dir}': {first}") from None
    _check_twotower(model, version_dir)
    return LoadedModel(model, version_dir, metadata)


def _check_twotower(model, version_dir: Path) -> None:
    """The signatures, their inputs and outputs, and the titles table a twotower export has; a SavedModel that
    only shares the signature names is refused here rather than failing later with an attribute error."""
    import tensorflow as tf

    missing = [s for s in SIGNATURES if s not in model.signatures]
    if missing:
        raise ExportError(f"'{version_dir}' is a SavedModel but not a twotower export (no {', '.join(missing)})")
    for name in SIGNATURES:
        function = model.signatures[name]
        inputs = set(function.structured_input_signature[1])
        outputs = set(function.structured_outputs)
        if inputs != SIGNATURE_INPUTS[name] or outputs != SIGNATURE_OUTPUTS[name]:
            expected = ", ".join(sorted(SIGNATURE_INPUTS[name]))
            raise ExportError(
                f"'{version_dir}' is a SavedModel but not a twotower export ({name} takes "
                f"{', '.join(sorted(inputs)) or 'nothing'}, not {expected})"
                if inputs != SIGNATURE_INPUTS[name]
                else f"'{version_dir}' is a SavedModel but not a twotower export ({name} returns "
                f"{', '.join(sorted(outputs)) or 'nothing'}, not {', '.join(sorted(SIGNATURE_OUTPUTS[name]))})"
            )
    titles = getattr(model, "titles", None)
    if not isinstance(titles, tf.Variable) or titles.dtype != tf.string or titles.shape.rank != 1:
        raise ExportError(f"'{version_dir}' is a SavedModel but not a twotower export (no table of movie titles)")
