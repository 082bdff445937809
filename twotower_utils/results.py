"""Where a run's outputs go: ``metrics.json``, figures, saved models.  Writes are atomic,
so an interrupted notebook never leaves a half-written file behind."""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

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


def read_metrics(output_dir: str | os.PathLike) -> dict[str, Any]:
    path = Path(output_dir) / METRICS_FILE
    if not path.exists():
        return {}
    return json.loads(path.read_text())


def record_metrics(output_dir: str | os.PathLike, section: str, values: dict[str, Any]) -> dict[str, Any]:
    """Merge ``values`` into ``metrics.json`` under ``section`` (one section per notebook)."""
    path = Path(output_dir) / METRICS_FILE
    metrics = read_metrics(output_dir)
    metrics[section] = _jsonable(values)
    write_json_atomic(path, metrics)
    return metrics


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
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target


def load_saved_config(output_dir: str | os.PathLike) -> dict[str, Any] | None:
    """What ``save_model`` wrote next to the weights, or ``None`` when there is no saved model."""
    path = Path(output_dir) / MODEL_DIR / "config.json"
    return json.loads(path.read_text()) if path.exists() else None


def load_model_weights(model, output_dir: str | os.PathLike) -> None:
    """Load saved weights into a freshly built model of the same config."""
    model.load_weights(str(Path(output_dir) / MODEL_DIR / "weights")).expect_partial()
