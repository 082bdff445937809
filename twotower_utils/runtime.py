"""The process around the models: TensorFlow's start-up noise, progress bars, interrupts.

**Start-up noise.**  The ``tensorflow`` wheel carries CUDA support; on a machine without a GPU
driver its first device scan logs ``E ... cuda_platform.cc] failed call to cuInit: ...`` at
*error* level, which ``TF_CPP_MIN_LOG_LEVEL=2`` (set by the package) does not hide and which
notebooks show as a red box.  ``TF_CPP_MIN_LOG_LEVEL=3`` would hide it, but it would hide every
real C++ error too, and the ``tensorflow-cpu`` wheel cannot be used because tf-keras and TFRS
require the ``tensorflow`` distribution by name.  So ``quiet_device_scan`` filters *only* that
scan: TensorFlow's first ``_initialize_physical_devices`` runs with file descriptor 2 sent to a
temporary file, and afterwards every line is passed on to stderr except the lines matching
``STARTUP_NOISE``.  Nothing else is touched; ``TWOTOWER_SHOW_TF_STARTUP=1`` turns the filter off.

**Progress.**  ``progress`` is tqdm: a bar with rate and estimate on a terminal or in JupyterLab,
nothing when output is not a terminal (logs, CI) or in a headless papermill run.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import sys
import tempfile
from collections.abc import Iterable, Iterator

STARTUP_NOISE = (
    # no GPU driver: the CUDA platform's first scan fails; TensorFlow then runs on the CPU as it should
    re.compile(r"cuda_platform\.cc:\d+\] failed call to cuInit"),
    re.compile(r"cuda_(executor|diagnostics)\.cc:\d+\] .*(kernel driver does not appear|no NVIDIA GPU device)"),
)
# ScaNN's C++ (its own absl logging, which TF_CPP_MIN_LOG_LEVEL does not reach) reports every index build at
# info level; its warnings (W...) and errors (E...) pass
SCANN_INFO = (
    re.compile(r"^WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"),
    re.compile(r"^I\d{4} [\d:. ]+\d+ (partitioner_factory_base|kmeans_tree_partitioner_utils|scann_builder|"
               r"partitioner_factory|brute_force|scann_ops)[\w.]*:\d+\]"),
)  # fmt: skip
# XLA announces its first compiled cluster at info level through absl (once per process), past TF_CPP_MIN_LOG_LEVEL
XLA_INFO = (
    re.compile(r"^WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"),
    re.compile(r"^I\d{4} [\d:. ]+\d+ device_compiler\.h:\d+\] Compiled cluster using XLA!"),
)
# tf.data rewrites a parallel map inside a traced function into a plain MapDataset and TensorFlow 2.20 logs, at
# error level, that the rewritten node carries an attribute the plain op does not declare; the attribute is ignored
TFDATA_REWRITE = (
    re.compile(r"node_def_util\.cc:\d+\] NodeDef mentions attribute use_unbounded_threadpool which is not in the op"),
)
SHOW_STARTUP_ENV = "TWOTOWER_SHOW_TF_STARTUP"
HEADLESS_ENV = "TWOTOWER_HEADLESS"


def is_noise(line: str, noise=STARTUP_NOISE) -> bool:
    return any(pattern.search(line) for pattern in noise)


@contextlib.contextmanager
def filtered_stderr(noise=STARTUP_NOISE) -> Iterator[None]:
    """Send file descriptor 2 to a temporary file for the block, then pass on every line of it to
    stderr except those matching ``noise`` (C++ writes straight to the descriptor, not ``sys.stderr``)."""
    with contextlib.suppress(Exception):
        sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no descriptor 2 (some embedded interpreters): nothing to filter
        yield
        return
    with tempfile.TemporaryFile(mode="w+b") as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            lines = capture.read().decode(errors="replace").splitlines(True)
            kept = [line for line in lines if not is_noise(line, noise)]
            if kept:
                os.write(2, "".join(kept).encode())


def quiet_device_scan() -> bool:
    """Wrap TensorFlow's first device scan in ``filtered_stderr`` (idempotent; after TensorFlow is
    imported, before its first op).  Returns whether the filter is in place."""
    if os.environ.get(SHOW_STARTUP_ENV, "").lower() in ("1", "true", "yes"):
        return False
    try:
        from tensorflow.python.eager import context
    except ImportError:
        return False
    scan = getattr(context.Context, "_initialize_physical_devices", None)
    if scan is None:  # another TensorFlow: leave its start-up as it is
        return False
    if getattr(scan, "_twotower_quiet", False):
        return True

    @functools.wraps(scan)
    def quiet_scan(self, *args, **kwargs):
        if getattr(self, "_physical_devices", None) is not None and not (args or kwargs):
            return scan(self, *args, **kwargs)  # already scanned: a cheap no-op
        with filtered_stderr():
            return scan(self, *args, **kwargs)

    quiet_scan._twotower_quiet = True
    context.Context._initialize_physical_devices = quiet_scan
    return True


@contextlib.contextmanager
def tensorflow_warnings_only() -> Iterator[None]:
    """TensorFlow's Python logger at WARNING for the block: ``tf.saved_model.save`` logs
    "INFO:tensorflow:Assets written to: ..." whenever something has turned INFO on (absl, TFDS)."""
    import logging

    logger = logging.getLogger("tensorflow")
    level = logger.level
    logger.setLevel(max(logging.WARNING, level))
    try:
        yield
    finally:
        logger.setLevel(level)


def _interactive() -> bool:
    """In a Jupyter kernel that a person is watching (not a headless papermill run)."""
    if os.environ.get(HEADLESS_ENV) == "1":
        return False
    return "ipykernel" in sys.modules and type(sys.stdout).__module__.startswith("ipykernel")


def progress(iterable: Iterable | None = None, total: int | None = None, desc: str = "", unit: str = "it", **kwargs):
    """A tqdm progress bar (rate, elapsed time and estimate) that stays quiet when nobody watches:
    a widget in JupyterLab, a text bar on a terminal, nothing in logs, CI or headless notebook runs."""
    if _interactive():
        from tqdm.auto import tqdm

        return tqdm(iterable, total=total, desc=desc, unit=unit, **kwargs)
    from tqdm import tqdm

    quiet = os.environ.get(HEADLESS_ENV) == "1" or not sys.stderr.isatty()
    return tqdm(iterable, total=total, desc=desc, unit=unit, disable=quiet, file=sys.stderr, **kwargs)


def resident_bytes() -> int:
    """This process's resident memory now, in bytes (Linux ``/proc/self/statm``; 0 where it is missing)."""
    try:
        with open("/proc/self/statm") as handle:
            pages = int(handle.read().split()[1])
    except (OSError, ValueError, IndexError):
        return 0
    return pages * os.sysconf("SC_PAGE_SIZE")


def peak_rss_bytes() -> int:
    """This process's peak resident memory so far, in bytes (Linux's ``getrusage`` reports kilobytes)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def say(message: str) -> None:
    """Print a line without breaking a progress bar that is being drawn."""
    from tqdm import tqdm

    tqdm.write(message)
