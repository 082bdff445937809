"""The interactive embedding-dimension panel of notebook 05 (ipywidgets), and its headless fallback.

The work of one click is a plain function, ``train_and_summarise``, which trains with the fast path
(``sweep.run_one``, the function the sweep uses) and calls back after every epoch; the panel only wires
widgets to it.  Everything the panel draws goes into its ``Output`` widgets as PNG images, so a test can
drive it without a browser: set ``panel.dimension.value``, call ``panel.button.click()``, look at
``panel.records`` and ``panel.live.outputs``.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import tensorflow as tf

from twotower_utils.config import ConfigError, RunConfig
from twotower_utils.data.movielens import MovieLens
from twotower_utils.data.splits import Split
from twotower_utils.evaluation.counting import metric_name
from twotower_utils.experiments.sweep import DEFAULT_DIMS, run_one
from twotower_utils.models.two_tower import TwoTowerModel

# Processes that execute notebooks without a browser: widgets cannot render under them.
HEADLESS_RUNNERS = (
    "papermill",
    "nbconvert",
    "nbclient",
    "pytest",
    "twotower_utils run",
    "twotower_utils.notebook.runner",
    "jupyter-execute",
)


class _EpochHook(tf.keras.callbacks.Callback):
    def __init__(self, on_epoch: Callable[[int, dict], None]) -> None:
        super().__init__()
        self.on_epoch = on_epoch

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.on_epoch(epoch + 1, dict(logs or {}))


def train_and_summarise(
    config: RunConfig, data: MovieLens, split: Split, on_epoch: Callable[[int, dict], None] | None = None
) -> tuple[dict[str, Any], TwoTowerModel]:
    """One try of the panel: train ``config`` with the fast path; return the sweep's record for it and the model.

    ``on_epoch(epoch, logs)`` runs after every epoch (1-based) with the loss and the train (``factorized_top_k/...``)
    and test (``val_factorized_top_k/...``) top-k of that epoch.  No validation model is trained here (that is the
    sweep's job), so a click costs one training.
    """
    callbacks = [_EpochHook(on_epoch)] if on_epoch is not None else []
    record, result = run_one(config, data, split, callbacks=callbacks)
    return record, result.model


def parameter_count(data: MovieLens, embedding_dim: int) -> int:
    """Both towers' parameters: one ``embedding_dim`` row per id plus the out-of-vocabulary row."""
    return (data.num_users + 1 + data.num_movies + 1) * embedding_dim


def comparison_table(records: Sequence[dict[str, Any]], k: int = 10) -> pd.DataFrame:
    """One row per try: settings, parameters, final train/test top-k (both protocols), gap, time."""
    rows = []
    for number, record in enumerate(records, start=1):
        config = record["config"]
        rows.append(
            {
                "try": number,
                "dim": record["embedding_dim"],
                "epochs": config["epochs"],
                "learning_rate": config["learning_rate"],
                "parameters": record["parameters"]["total"],
                f"train top-{k}": record["train_topk"][str(k)],
                f"test top-{k}": record["test_topk"][str(k)],
                f"test top-{k}, seen excluded": record["test_topk_filtered"][str(k)],
                f"gap top-{k}": record["gap_topk"][str(k)],
                "train s": round(record["train_seconds"], 1),
            }
        )
    return pd.DataFrame(rows).set_index("try") if rows else pd.DataFrame()


def widgets_can_render(interactive: bool = True) -> bool:
    """Whether widgets shown now will reach a live front end (JupyterLab, Notebook, VS Code).

    ``False`` when ``interactive`` is false, ``TWOTOWER_HEADLESS`` is set, ipywidgets is missing, we are not in
    a Jupyter kernel, or the kernel was started by a headless executor (papermill, nbconvert, nbclient, pytest,
    ``python -m twotower_utils run``), which is read from the parent process's command line.
    """
    if not interactive or os.environ.get("TWOTOWER_HEADLESS"):
        return False
    try:
        import ipywidgets  # noqa: F401
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    if shell is None or getattr(shell, "kernel", None) is None:
        return False
    parent = _parent_command_line()
    return not any(name in parent for name in HEADLESS_RUNNERS)


def _parent_command_line() -> str:
    try:
        with open(f"/proc/{os.getppid()}/cmdline", "rb") as handle:
            return handle.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:  # not Linux: no way to tell, assume a front end
        return ""


def _png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def live_figure(history: pd.DataFrame, title: str, ks: Sequence[int] = (10, 100)):
    """Loss and train/test top-k per epoch so far, one panel each."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 1 + len(ks), figsize=(4.0 * (1 + len(ks)), 3.2))
    epochs = history["epoch"] if "epoch" in history else np.arange(1, len(history) + 1)
    axes[0].plot(epochs, history["loss"], marker="o")
    axes[0].set(xlabel="epoch", title="training loss")
    for ax, k in zip(axes[1:], ks, strict=True):
        for prefix, label in (("", "train"), ("val_", "test")):
            if metric_name(k, prefix) in history:
                ax.plot(epochs, history[metric_name(k, prefix)], marker="o", label=label)
        ax.set(xlabel="epoch", title=f"top-{k} accuracy")
        if ax.lines:
            ax.legend(fontsize=8)
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def comparison_figure(table: pd.DataFrame, k: int = 10):
    """Test top-k (both protocols) and the train-test gap of every try, against the dimension."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    for column, marker in ((f"test top-{k}", "o"), (f"test top-{k}, seen excluded", "s")):
        axes[0].scatter(table["dim"], table[column], marker=marker, label=column)
    axes[1].scatter(table["dim"], table[f"gap top-{k}"], color="tab:red")
    for index, row in table.iterrows():
        axes[1].annotate(
            f"#{index}", (row["dim"], row[f"gap top-{k}"]), fontsize=7, xytext=(3, 3), textcoords="offset points"
        )
    axes[0].set(title=f"test top-{k} of each try", xlabel="embedding dimension")
    axes[1].set(title=f"train - test top-{k}", xlabel="embedding dimension")
    axes[0].legend(fontsize=8)
    for ax in axes:
        ax.set_xscale("log", base=2)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


class DimensionPanel:
    """Dimension / epochs / learning-rate controls, a Train button, live curves and a table of every try.

    ``interactive=False`` (headless) still trains through ``train``, and shows the final curves and the table
    inline with ``IPython.display`` instead of inside widgets.
    """

    def __init__(
        self,
        data: MovieLens,
        split: Split,
        base_config: RunConfig,
        dims: Sequence[int] = DEFAULT_DIMS,
        interactive: bool = True,
        max_epochs: int = 30,
    ) -> None:
        import ipywidgets as widgets

        self.data, self.split, self.base_config = data, split, base_config
        self.interactive = interactive
        self.records: list[dict[str, Any]] = []
        self.model: TwoTowerModel | None = None  # the latest try's model
        self.redraws = 0
        options = sorted({int(d) for d in dims} | {base_config.model.embedding_dim})
        self.dimension = widgets.SelectionSlider(
            options=options, value=base_config.model.embedding_dim, description="dimension", continuous_update=False
        )
        self.epochs = widgets.IntSlider(
            value=base_config.epochs,
            min=1,
            max=max(max_epochs, base_config.epochs),
            description="epochs",
            continuous_update=False,
        )
        self.learning_rate = widgets.FloatLogSlider(
            value=base_config.learning_rate,
            base=10,
            min=-3,
            max=0.5,
            step=0.1,
            description="learning rate",
            readout_format=".3g",
            continuous_update=False,
        )
        self.auto = widgets.Checkbox(value=False, description="retrain when a value changes")
        self.button = widgets.Button(description="Train", button_style="primary", icon="play")
        self.status = widgets.HTML(value="Pick a dimension and press <b>Train</b>.")
        self.live = widgets.Output()
        self.comparison = widgets.Output()
        self.button.on_click(lambda _button: self.train())
        for control in (self.dimension, self.epochs, self.learning_rate):
            control.observe(self._value_changed, names="value")
        self.widget = widgets.VBox(
            [
                widgets.HBox([self.dimension, self.epochs, self.learning_rate]),
                widgets.HBox([self.button, self.auto]),
                self.status,
                self.live,
                self.comparison,
            ]
        )

    def config(self) -> RunConfig:
        return self.base_config.replace(
            embedding_dim=int(self.dimension.value),
            epochs=int(self.epochs.value),
            learning_rate=float(self.learning_rate.value),
        )

    def _value_changed(self, change) -> None:
        if self.auto.value:
            self.train()

    def train(self) -> dict[str, Any] | None:
        """Train the controls' current values, drawing curves every epoch; add the try to the table."""
        try:
            config = self.config()
        except ConfigError as error:
            self.status.value = f"<b>{error}</b>"
            return None
        params = parameter_count(self.data, config.model.embedding_dim)
        label = f"dim {config.model.embedding_dim} · {config.epochs} epochs · lr {config.learning_rate:.3g} · {params:,} parameters"
        rows: list[dict] = []

        def on_epoch(epoch: int, logs: dict) -> None:
            rows.append({"epoch": epoch, **logs})
            train10, test10 = logs.get(metric_name(10), np.nan), logs.get(metric_name(10, "val_"), np.nan)
            self.status.value = (
                f"{label} — epoch {epoch}/{config.epochs}: loss {logs.get('loss', np.nan):,.0f}, "
                f"top-10 train {train10:.4f} / test {test10:.4f} (gap {train10 - test10:+.4f})"
            )
            if self.interactive or epoch == config.epochs:
                self._show(self.live, live_figure(pd.DataFrame(rows), label))

        self.button.disabled = True
        self.status.value = f"{label} — training ..."
        try:
            record, self.model = train_and_summarise(config, self.data, self.split, on_epoch)
        finally:
            self.button.disabled = False
        self.records.append(record)
        table = self.table()
        self.status.value += f" — done in {record['train_seconds']:.1f} s; {len(table)} tries below."
        self._show(self.comparison, comparison_figure(table), table)
        return record

    def table(self) -> pd.DataFrame:
        return comparison_table(self.records)

    def _show(self, output, fig, table: pd.DataFrame | None = None) -> None:
        from IPython.display import HTML, Image, display

        image = Image(data=_png(fig))
        self.redraws += 1
        if not self.interactive:
            display(image, *([] if table is None else [table]))
            return
        output.outputs = ()
        output.append_display_data(image)
        if table is not None:
            output.append_display_data(HTML(table.to_html(float_format=lambda v: f"{v:.4f}")))
