"""Run the numbered notebooks headless with papermill: ``python -m twotower_utils run``.

- ``-p name=value`` is checked against every notebook's ``parameters`` cell before anything runs:
  a name no notebook has, or a value of the wrong type for the default, stops with one message;
  a name only some notebooks have goes to those.
- ``--study`` runs the full studies instead of the teaching defaults: every name of ``STUDY`` goes to the
  notebooks whose ``parameters`` cell has it (``-p`` still wins), e.g. 3 model seeds instead of 1 and the whole
  grids; ``make study``.
- ``--parameters-table`` prints, as Markdown, which notebooks read which parameter and its defaults (README's
  "Changing parameters" table), from the notebooks' ``parameters`` cells.
- Progress: one line per notebook with elapsed time; on a terminal also a per-cell bar.
- Kernels talk to the runner over IPC sockets (no "running over TCP without encryption").
- Ctrl-C or SIGTERM stops the run: the running kernel is killed, papermill returns as from any dead
  kernel, every finished notebook's results stay valid, the interrupted notebook's executed copy is
  not replaced, and the next run starts normally.  A second Ctrl-C stops at once.
"""

from __future__ import annotations

import _thread
import argparse
import ast
import contextlib
import difflib
import functools
import logging
import os
import signal
import sys
import threading
import time
import weakref
from pathlib import Path
from typing import Any

from twotower_utils.results import update_json

PROG = "python -m twotower_utils run"
DEFAULT_KERNEL = "twotower"
SET_BY_RUNNER = ("output_dir",)  # every notebook has it; the runner passes --output-dir
# The full studies (``--study``, ``make study``): the values behind the tables in docs/results.md, where a notebook's
# default teaches with less (one seed, the chosen point of a grid) so that it runs in a few minutes.  Each value was
# the notebook's default before the series was cut to teaching size; a name goes to every notebook that has it.
STUDY: dict[str, Any] = {
    "seeds": 3,  # 06-10: model seeds per configuration (mean ± std)
    "validation_folds": 5,  # 06: the validation check's folds, as `make tune` chose with
    "side_roads": True,  # 06: normalised embeddings, side features and deeper towers off the best model
    "rating_weights": "0.03,0.1,0.3,1,3",  # multitask: every joint point of the sweep (w_retrieval = 1)
    "balanced_point": True,  # multitask: the point whose two losses are equal at initialisation
    "stop_gradient_point": True,  # multitask: a rating head on frozen retrieval embeddings
    "rating_models": "mean,biases,als,mf,mlp,mlp+features,dcn,dcn+features,svd++,multitask",  # ranking: every model
    "ensemble_members": "als,svd++,multitask",  # ranking: the blend chosen on validation (make ranking-tune)
    "rerank_model": "svd++",  # ranking: the rating model the blend's N and w were tuned with
    "candidate_counts": "10,25,50,100,200",  # ranking: every N of the two stages' trade-off
    "u1_models": "all",  # ranking: every rating model of the u1 study (rating_study.MODEL_NAMES)
    "u1_tf_models": "multitask",  # ranking: notebook 07's model blended in on u1 as well
    "signal_folds": 3,  # ranking: the every-signal re-rankers learn from three validation folds' lists
    "u1_effort": "full",  # ranking: the samplers' and autoencoders' full schedules (make rating-study's)
    # sequence: SASRec's own setting as `make sequence-study` trains it (long histories, two blocks, early stopping
    # with patience over up to 200 epochs), the baselines chosen in the notebook, and the quality-vs-L curve
    "history_length": 200,
    "blocks": 2,
    "dropout": 0.2,
    "sequence_learning_rate": 0.002,
    "sequence_batch_size": 64,
    "sequence_epochs": 200,
    "patience": 5,
    "targets_ahead": 5,  # sequence: leave-latest-out also tries the next five movies as targets
    "tune_baselines": True,
    "recency_lambdas": "50,200,800",
    "history_lengths": "10,25,50,100,200",
    "ann_candidates": 1_000_000,  # serving: the synthetic catalogue of exact vs ScaNN search
}
_NO_DEFAULT = object()  # a default that is an expression, not a literal: any value goes


class ParameterError(ValueError):
    """A ``-p`` parameter that no notebook has, or a value of the wrong type."""


def numbered_notebooks(notebook_dir: Path) -> list[Path]:
    """``NN_name.ipynb`` files in order."""
    return sorted(p for p in notebook_dir.glob("[0-9][0-9]_*.ipynb"))


def notebook_parameters(notebook: Path) -> dict[str, Any]:
    """The names in a notebook's ``parameters`` cell and their default values (papermill's inspection)."""
    import papermill

    defaults = {}
    for name, found in papermill.inspect_notebook(str(notebook)).items():
        try:
            defaults[name] = ast.literal_eval(found["default"])
        except (ValueError, SyntaxError):
            defaults[name] = _NO_DEFAULT
    return defaults


def parameters_table(notebooks: list[Path]) -> str:
    """A Markdown table of every ``-p`` parameter of ``notebooks`` (not those the runner sets): the notebooks whose
    ``parameters`` cell has it, with its default there (notebooks that share a default share a line), its value
    under ``--study`` (``STUDY``) and the cell's comment on it.  Rows in the order the notebooks first declare them."""
    import papermill

    rows: dict[str, dict[str, Any]] = {}
    for notebook in notebooks:
        number = notebook.name[:2]
        for name, found in papermill.inspect_notebook(str(notebook)).items():
            if name in SET_BY_RUNNER:
                continue
            row = rows.setdefault(name, {"defaults": {}, "help": ""})
            row["defaults"].setdefault(found["default"], []).append(number)
            row["help"] = row["help"] or (found.get("help") or "").strip()
    lines = ["| parameter | notebooks: default | `make study` | what it sets |", "|---|---|---|---|"]
    for name, row in rows.items():
        defaults = "; ".join(f"{', '.join(numbers)}: `{default}`" for default, numbers in row["defaults"].items())
        study = f"`{STUDY[name]!r}`" if name in STUDY else ""
        lines.append(f"| `{name}` | {defaults} | {study} | {row['help'].replace('|', '/')} |")
    return "\n".join(lines)


def _coerce(name: str, value: Any, default: Any, notebook: str) -> Any:
    """``value`` as the type of ``default``, or ``ParameterError``."""
    if default is _NO_DEFAULT or default is None or type(value) is type(default):
        return value
    if isinstance(default, str):
        return str(value)  # e.g. sweep_dims=8 for the default "8 32 128"
    if type(default) is float and type(value) is int:
        return float(value)
    kind = {bool: "true or false", int: "a whole number", float: "a number"}.get(type(default), type(default).__name__)
    raise ParameterError(f"{name}={value!r}: {notebook} expects {kind} (its default is {default!r})")


def plan_parameters(parameters: dict[str, Any], notebooks: list[Path]) -> dict[Path, dict[str, Any]]:
    """What each notebook gets of ``parameters`` (only the names its ``parameters`` cell has, as the
    default's type); ``ParameterError`` for a name no notebook has or a value of the wrong type."""
    declared = {notebook: notebook_parameters(notebook) for notebook in notebooks}
    valid = sorted({name for names in declared.values() for name in names} - set(SET_BY_RUNNER))
    for name in parameters:
        if name in SET_BY_RUNNER:
            raise ParameterError(f"{name} is set by the runner: use --{name.replace('_', '-')} instead of -p {name}=")
        if not any(name in names for names in declared.values()):
            close = difflib.get_close_matches(name, valid, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ParameterError(
                f"unknown parameter {name!r}: no notebook in this run has it.{hint}\n"
                f"  valid parameters: {', '.join(valid)}"
            )
    return {
        notebook: {
            name: _coerce(name, value, names[name], notebook.name)
            for name, value in parameters.items()
            if name in names
        }
        for notebook, names in declared.items()
    }


def study_parameters(notebooks: list[Path]) -> dict[str, Any]:
    """The names of ``STUDY`` that some notebook of this run has (``--only 06 --study`` passes 06's only)."""
    declared = set().union(*(notebook_parameters(notebook) for notebook in notebooks))
    return {name: value for name, value in STUDY.items() if name in declared}


_KERNELS: weakref.WeakSet = weakref.WeakSet()  # the kernel managers of this run, to stop on a signal


@functools.cache
def _kernel_manager_class():
    from jupyter_client import AsyncKernelManager

    class IPCKernelManager(AsyncKernelManager):
        """A local kernel over IPC sockets: nothing on TCP, so no unencrypted-TCP warning."""

        def __init__(self, **kwargs):
            kwargs.setdefault("transport", "ipc")
            super().__init__(**kwargs)
            _KERNELS.add(self)

        async def shutdown_kernel(self, now: bool = False, restart: bool = False):
            # after Ctrl-C/SIGTERM the kernel is stopped at once: a graceful shutdown request would
            # race the cell it is running, and the kernel would print that race's traceback
            return await super().shutdown_kernel(now=now or _STOPPING.is_set(), restart=restart)

    return IPCKernelManager


def _kill_kernels() -> bool:
    """SIGKILL every live kernel of this run (with its own process group: whatever it started);
    whether there was one."""
    killed = False
    for manager in list(_KERNELS):
        process = getattr(getattr(manager, "provisioner", None), "process", None)
        if process is None or process.poll() is not None:
            continue
        with contextlib.suppress(OSError):
            if os.getpgid(process.pid) == process.pid:
                os.killpg(process.pid, signal.SIGKILL)
            else:
                process.kill()
            killed = True
    return killed


class _QuietWhileStopping(logging.Filter):
    """papermill/nbclient log "Kernel died ..." when we kill the kernel on purpose: not news then."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not _STOPPING.is_set()


def run_notebook(notebook: Path, output_dir: Path, parameters: dict, kernel: str, bar: bool = False) -> float:
    """Execute one notebook into ``output_dir/executed``; raise ``RuntimeError`` naming it on failure.
    The executed copy is written under a temporary name and renamed when the notebook ends (done or
    failed), so an interrupt never replaces a good executed copy with a partial one."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    executed = output_dir / "executed" / notebook.name
    executed.parent.mkdir(parents=True, exist_ok=True)
    partial = executed.with_name(f".{notebook.stem}.running.ipynb")
    start = time.perf_counter()
    previous = os.environ.get("TWOTOWER_HEADLESS")
    os.environ["TWOTOWER_HEADLESS"] = "1"  # the kernel inherits it: no widgets can render here
    try:
        papermill.execute_notebook(
            str(notebook),
            str(partial),
            parameters={**parameters, "output_dir": str(output_dir.resolve())},
            kernel_name=kernel,
            cwd=str(notebook.parent),
            progress_bar={"desc": notebook.stem, "leave": False} if bar else False,
            kernel_manager_class=_kernel_manager_class(),
        )
        os.replace(partial, executed)
    except Exception as error:
        if _STOPPING.is_set():  # the kernel was killed for Ctrl-C/SIGTERM: keep the earlier executed copy
            raise Interrupted(_STOPPING.signum) from None
        if not isinstance(error, PapermillExecutionError):
            raise
        os.replace(partial, executed)
        raise RuntimeError(
            f"{notebook.name} failed in cell {error.exec_count}: {error.ename}: {error.evalue}\n"
            f"  the executed notebook with the error is kept at {executed}"
        ) from None
    finally:
        partial.unlink(missing_ok=True)
        if previous is None:
            os.environ.pop("TWOTOWER_HEADLESS", None)
        else:
            os.environ["TWOTOWER_HEADLESS"] = previous
    return time.perf_counter() - start


def parse_parameters(pairs: list[str]) -> dict:
    """``name=value`` pairs; numbers become numbers."""
    parameters = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise SystemExit(f"parameters are name=value, got {pair!r}")
        parameters[name] = _parse_value(value)
    return parameters


def _parse_value(value: str):
    for convert in (int, float):
        try:
            return convert(value)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(value.lower(), value)


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class _Stopping(threading.Event):
    signum: int = signal.SIGINT
    watchdog: threading.Timer | None = None


_STOPPING = _Stopping()
STOP_GRACE_SECONDS = 15  # after that, a run still not out of papermill is interrupted where it is


def _on_signal(signum, frame):
    """First Ctrl-C/SIGTERM: kill the running kernel and let papermill return (as for any dead kernel),
    so its event loop is never abandoned half-way; with no kernel running, stop here.  Second: stop here."""
    if _STOPPING.is_set():
        raise Interrupted(signum)
    _STOPPING.signum = signum
    _STOPPING.set()
    if not _kill_kernels():
        raise Interrupted(signum)
    _STOPPING.watchdog = threading.Timer(STOP_GRACE_SECONDS, _thread.interrupt_main, args=(signum,))
    _STOPPING.watchdog.daemon = True
    _STOPPING.watchdog.start()


def _record_run(output_dir: Path, parameters: dict, timings: dict[str, float]) -> None:
    """Add this run's timings to the ``run`` section (under the metrics lock: other writers keep theirs)."""

    def merge(metrics: dict) -> dict:
        previous = metrics.get("run", {}).get("seconds_per_notebook", {})
        run = {"parameters": parameters, "seconds_per_notebook": {**previous, **timings}}
        return {**metrics, "run": run}

    update_json(output_dir / "metrics.json", merge, {})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--notebooks", type=Path, default=Path("notebooks"))
    parser.add_argument("--output-dir", type=Path, default=Path("results"))
    parser.add_argument("--kernel", default=DEFAULT_KERNEL)
    parser.add_argument("--only", nargs="*", help="run only notebooks whose name starts with these prefixes")
    parser.add_argument(
        "-p", "--parameter", action="append", default=[], help="name=value for every notebook whose parameters have it"
    )
    parser.add_argument(
        "--study",
        action="store_true",
        help="the full studies: the values of STUDY (3 seeds, whole grids) for the notebooks that have them",
    )
    parser.add_argument(
        "--parameters-table",
        action="store_true",
        help="print which notebooks read which parameters (Markdown), run nothing",
    )
    args = parser.parse_args(argv)
    parameters = parse_parameters(args.parameter)
    notebooks = numbered_notebooks(args.notebooks)
    if args.only:
        notebooks = [n for n in notebooks if n.name.startswith(tuple(args.only))]
    if not notebooks:
        print(f"no numbered notebooks found in {args.notebooks}", file=sys.stderr)
        return 1
    if args.parameters_table:
        print(parameters_table(notebooks))
        return 0
    try:
        if args.study:
            parameters = {**study_parameters(notebooks), **parameters}
        plan = plan_parameters(parameters, notebooks)
    except ParameterError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    bar = sys.stderr.isatty()
    _STOPPING.clear()
    _STOPPING.watchdog = None
    quiet = _QuietWhileStopping()
    for name in ("papermill", "nbclient", "traitlets"):
        logging.getLogger(name).addFilter(quiet)
    handlers = {signum: signal.signal(signum, _on_signal) for signum in (signal.SIGINT, signal.SIGTERM)}
    timings: dict[str, float] = {}
    start, notebook = time.perf_counter(), notebooks[0]
    try:
        for number, notebook in enumerate(notebooks, 1):
            elapsed = time.perf_counter() - start
            print(f"[{number}/{len(notebooks)}] running {notebook.name} ... ({elapsed:.0f} s so far)", flush=True)
            try:
                seconds = run_notebook(notebook, args.output_dir, plan[notebook], args.kernel, bar)
            except RuntimeError as error:
                print(f"error: {error}", file=sys.stderr)
                return 1
            timings[notebook.stem] = round(seconds, 1)
            print(f"  done in {seconds:.1f} s", flush=True)
    except Interrupted as interrupt:
        done = ", ".join(timings) or "none"
        print(
            f"\ninterrupted ({interrupt}) while running {notebook.name}: its earlier outputs are kept as they were;\n"
            f"  finished notebooks ({done}) have their results in {args.output_dir}/. Run again to redo the rest.",
            file=sys.stderr,
        )
        return 128 + interrupt.signum
    finally:
        if _STOPPING.watchdog is not None:
            _STOPPING.watchdog.cancel()
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
        for name in ("papermill", "nbclient", "traitlets"):
            logging.getLogger(name).removeFilter(quiet)
        if timings:
            _record_run(args.output_dir, parameters, timings)
    print(f"all {len(notebooks)} notebooks ran in {sum(timings.values()):.1f} s; outputs in {args.output_dir}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
