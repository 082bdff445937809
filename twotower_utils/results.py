"""Where a run's outputs go: ``metrics.json``, figures, saved models, cache files.

- Writes are atomic (a temporary file renamed into place), so an interrupted run never leaves a
  half-written file behind.
- Read-merge-write updates of a shared file (``record_metrics``) hold an exclusive lock on
  ``<file>.lock``, so two processes sharing an output folder (``make run-notebooks`` and
  ``make sweep``, two notebooks open in JupyterLab) never drop each other's sections.
- A file that cannot be read as JSON (truncated by a crash outside this package, edited by hand)
  is moved aside to ``<name>.corrupt-<time>`` with a warning and treated as absent: the caller
  rebuilds it instead of crashing on ``JSONDecodeError``.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

try:  # POSIX; elsewhere updates are not serialised (documented fallback)
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

import numpy as np

METRICS_FILE = "metrics.json"
MODEL_DIR = "model"


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON next to ``path`` then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".tmp", delete=False) as handle:
        json.dump(_jsonable(data), handle, indent=2, sort_keys=True)
        handle.write("\n")
        temporary = handle.name
    os.chmod(temporary, 0o644)  # temporary files are private; the result is an ordinary file
    os.replace(temporary, path)


class UnreadableFileWarning(UserWarning):
    """A JSON file could not be read; it was moved aside and will be rebuilt."""


def read_json(path: str | os.PathLike, default: Any = None) -> Any:
    """The JSON in ``path``; ``default`` when it does not exist or cannot be read.  An unreadable
    file is renamed to ``<name>.corrupt-<time>`` (kept for inspection) with a warning."""
    path = Path(path)
    try:
        content = json.loads(path.read_text())
        if default is not None and not isinstance(content, type(default)):
            raise ValueError(f"expected a JSON {type(default).__name__}, found a {type(content).__name__}")
        return content
    except FileNotFoundError:
        return default
    except (ValueError, UnicodeDecodeError) as error:  # JSONDecodeError is a ValueError
        aside = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}")
        with contextlib.suppress(FileNotFoundError):
            os.replace(path, aside)
        warnings.warn(
            f"{path} is not valid JSON ({error}); moved it aside to {aside.name} and starting it afresh",
            UnreadableFileWarning,
            stacklevel=2,
        )
        return default


@contextlib.contextmanager
def file_lock(path: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive lock on ``<path>.lock`` (blocking) for a read-modify-write of ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fcntl is None:  # pragma: no cover
        yield
        return
    with open(path.with_name(path.name + ".lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def update_json(path: str | os.PathLike, change: Callable[[Any], Any], default: Any = None) -> Any:
    """``change(current content)`` written back atomically, under ``file_lock``; returns what was written."""
    path = Path(path)
    with file_lock(path):
        content = change(read_json(path, default))
        write_json_atomic(path, content)
    return content


def read_metrics(output_dir: str | os.PathLike) -> dict[str, Any]:
    return read_json(Path(output_dir) / METRICS_FILE, {})


def record_metrics(output_dir: str | os.PathLike, section: str, values: dict[str, Any]) -> dict[str, Any]:
    """Merge ``values`` into ``metrics.json`` under ``section`` (one section per notebook)."""
    section_values = _jsonable(values)
    return update_json(Path(output_dir) / METRICS_FILE, lambda metrics: {**metrics, section: section_values}, {})


def save_figure(fig, output_dir: str | os.PathLike, name: str) -> Path:
    """Save a matplotlib figure as ``<output_dir>/figures/<name>.png`` (atomically)."""
    folder = Path(output_dir) / "figures"
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{name}.png"
    temporary = folder / f".{name}.tmp.png"
    fig.savefig(temporary, dpi=110, bbox_inches="tight")
    os.replace(temporary, target)
    return target


def save_model(model, config, output_dir: str | os.PathLike, extra: dict[str, Any] | None = None) -> Path:
    """Save weights and the config that built them to ``<output_dir>/model`` (replaced whole)."""
    target = Path(output_dir) / MODEL_DIR
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=".model-"))
    try:
        model.save_weights(str(staging / "weights"))
        write_json_atomic(staging / "config.json", {"config": config.to_dict(), **(extra or {})})
        os.chmod(staging, 0o755)
        with file_lock(target):  # two savers into one folder: one swap at a time
            if target.exists():
                shutil.rmtree(target)
            os.replace(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target


def load_saved_config(output_dir: str | os.PathLike) -> dict[str, Any] | None:
    """What ``save_model`` wrote next to the weights, or ``None`` when there is no saved model."""
    return read_json(Path(output_dir) / MODEL_DIR / "config.json")


def load_model_weights(model, output_dir: str | os.PathLike) -> None:
    """Load saved weights into a freshly built model of the same config."""
    model.load_weights(str(Path(output_dir) / MODEL_DIR / "weights")).expect_partial()
