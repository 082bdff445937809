"""Presets: the settings the tuning commands chose on validation, written once, with where they came from.

One JSON file per study lives beside this module (``<study>.json``, committed with the package):

==============  ==========================================  =====================================================
study           written by                                  what it chose
==============  ==========================================  =====================================================
``two_tower``   ``make tune`` (``python -m twotower_utils     the best two-tower's switches (notebook 06), EASE's
                tune``)                                     lambda over the same folds
``ranking``     ``make ranking-tune`` (``... ranking``)     the rating models and their shared optimisation, the
                                                            rating baselines' settings, the two stages' blend,
                                                            learned re-ranker and pipeline (notebook 08)
``multitask``   ``make multitask-tune`` (``... multitask``)  the rating head, the rating-only model's tower L2, the
                                                            joint task weights (notebook 07)
``sequence``    ``make sequence-tune`` (``... sequence``)   each temporal protocol's sequence tower, its epochs,
                                                            and the baselines' EASE / recency-weighted EASE settings
                                                            (notebook 09)
``dimension``   ``make sweep`` (``... sweep``)              the embedding dimension of the report's recipe
                                                            (notebook 05)
==============  ==========================================  =====================================================

Each file holds ``study``, ``command`` (the command line that wrote it), ``date``, ``folds`` (how many validation
folds judged; 1 for a single validation part), ``chosen`` (the settings) and ``validation`` (the scores they were
chosen on); optionally ``note``.  ``read`` returns that mapping, ``write`` replaces it (atomically, sorted keys),
and the named presets below turn ``chosen`` into ``RunConfig`` s.  A missing or malformed file, or a chosen setting
that is not a field of its model, is one ``PresetError`` naming the file.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import shlex
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from twotower_utils.config import ConfigError, MultitaskSpec, RatingSpec, RetrievalSpec, RunConfig, SequenceTower
from twotower_utils.results import write_json_atomic

DIRECTORY = Path(__file__).resolve().parent
STUDIES = ("two_tower", "ranking", "multitask", "sequence", "dimension")
KEYS = ("study", "command", "date", "folds", "chosen", "validation")
OPTIONAL_KEYS = ("note",)
PROTOCOLS = ("leave_latest", "leave_one_out")

__all__ = [
    "DIRECTORY",
    "STUDIES",
    "PresetError",
    "best_switches",
    "best_two_tower",
    "chosen_embedding_dim",
    "command_line",
    "ease_lambda",
    "joint_weights",
    "multitask_model",
    "multitask_head",
    "path",
    "rating_baselines",
    "rating_model",
    "rating_models",
    "rating_only_switches",
    "rating_shared",
    "read",
    "read_chosen",
    "sequence_baselines",
    "sequence_model",
    "sequence_next_item",
    "sequence_shared",
    "two_stage",
    "using",
    "write",
]


class PresetError(ConfigError):
    """A presets file is missing, malformed, or names a setting its model does not have."""


_active: list[Path] = []  # the folders ``using`` made the default, innermost last


@contextlib.contextmanager
def using(directory: str | Path | None) -> Iterator[None]:
    """Inside the block, presets are read from and written to ``directory`` by default (``None``: no change).
    A tuning command's ``--presets-dir`` runs its whole body inside one."""
    if directory is None:
        yield
        return
    _active.append(Path(directory))
    try:
        yield
    finally:
        _active.pop()


# ----------------------------------------------------------------------------------------------- files


def path(study: str, directory: str | Path | None = None) -> Path:
    """Where ``study``'s presets live: ``<directory>/<study>.json`` (default: the folder of the innermost
    ``using`` block, else this package's)."""
    if study not in STUDIES:
        raise PresetError(f"unknown presets study {study!r}; the studies are {', '.join(STUDIES)}")
    if directory is None:
        directory = _active[-1] if _active else DIRECTORY
    return Path(directory) / f"{study}.json"


def read(study: str, directory: str | Path | None = None) -> dict[str, Any]:
    """``study``'s presets file: ``{"study", "command", "date", "folds", "chosen", "validation"}`` (and ``note``
    when it has one).  A missing or malformed file is one ``PresetError``."""
    file = path(study, directory)
    try:
        content = json.loads(file.read_text())
    except FileNotFoundError:
        raise PresetError(
            f"no presets for {study!r}: {file} is missing; rerun the tuning command that writes it ({_WRITERS[study]})"
        ) from None
    except (ValueError, UnicodeDecodeError) as error:
        raise PresetError(
            f"{file} is not valid JSON ({error}); restore it from git or rerun {_WRITERS[study]}"
        ) from None
    problem = _malformed(content, study)
    if problem:
        raise PresetError(f"{file} is malformed: {problem}")
    return content


def read_chosen(study: str, directory: str | Path | None = None) -> dict[str, Any]:
    """``read(study)["chosen"]``."""
    return read(study, directory)["chosen"]


def write(
    study: str,
    chosen: dict[str, Any],
    *,
    command: str | Sequence[str],
    folds: int,
    validation: Any,
    directory: str | Path | None = None,
    date: str | None = None,
    note: str | None = None,
) -> Path:
    """Replace ``study``'s presets file (atomically; sorted keys, indent 2) with ``chosen``, the ``command`` that
    chose it (a string or its argv), ``folds``, the ``validation`` scores and today's date.  Returns its path."""
    file = path(study, directory)
    content: dict[str, Any] = {
        "study": study,
        "command": command if isinstance(command, str) else shlex.join(str(a) for a in command),
        "date": date or datetime.date.today().isoformat(),
        "folds": folds,
        "chosen": _plain(chosen),
        "validation": _plain(validation),
    }
    if note:
        content["note"] = note
    problem = _malformed(content, study)
    if problem:
        raise PresetError(f"not writing {file}: {problem}")
    write_json_atomic(file, content)
    return file


def command_line(prog: str, argv: Sequence[str] | None) -> str:
    """The command a tuning command records: ``prog`` (``"python -m twotower_utils tune"``) and its arguments
    (``argv``, or this process's own when ``None``)."""
    arguments = sys.argv[1:] if argv is None else list(argv)
    return " ".join([prog, *(shlex.quote(str(a)) for a in arguments)])


_WRITERS = {
    "two_tower": "make tune",
    "ranking": "make ranking-tune",
    "multitask": "make multitask-tune",
    "sequence": "make sequence-tune",
    "dimension": "make sweep",
}


def _malformed(content: Any, study: str) -> str:
    """What is wrong with a presets mapping, or ``""``."""
    if not isinstance(content, dict):
        return f"expected a JSON object, found {type(content).__name__}"
    missing = [k for k in KEYS if k not in content]
    unknown = sorted(k for k in content if k not in KEYS + OPTIONAL_KEYS)
    if missing or unknown:
        parts = ([f"missing {', '.join(missing)}"] if missing else []) + (
            [f"unknown field(s) {', '.join(unknown)}"] if unknown else []
        )
        return "; ".join(parts) + f" (a presets file has {', '.join(KEYS)} and optionally {', '.join(OPTIONAL_KEYS)})"
    if content["study"] != study:
        return f"it says study {content['study']!r}, expected {study!r}"
    if not isinstance(content["chosen"], dict):
        return "chosen must be a JSON object"
    if isinstance(content["folds"], bool) or not isinstance(content["folds"], int) or content["folds"] < 1:
        return f"folds must be a positive whole number, got {content['folds']!r}"
    if not isinstance(content["command"], str) or not isinstance(content["date"], str):
        return "command and date must be text"
    return ""


def _plain(value: Any) -> Any:
    """Tuples as lists, specs as their dicts: what JSON holds."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "to_dict"):
        return value.to_dict()
    return value


def _entry(chosen: dict[str, Any], key: str, study: str, directory) -> Any:
    if key not in chosen:
        raise PresetError(f"{path(study, directory)} is malformed: chosen has no {key!r}")
    return chosen[key]


def _config(study: str, where: str, directory, build) -> RunConfig:
    """``build()`` with a ``ConfigError`` (a setting its model does not have, a bad value) as one ``PresetError``
    naming the file and the entry."""
    try:
        return build()
    except PresetError:
        raise
    except (ConfigError, TypeError, KeyError, AttributeError) as error:
        raise PresetError(f"{path(study, directory)}: {where}: {error}") from None


# ----------------------------------------------------------------------------------------------- two-tower


def best_switches(directory: str | Path | None = None) -> dict[str, Any]:
    """The best two-tower's switches, by ``RunConfig.replace`` name (``make tune``)."""
    switches = _entry(read_chosen("two_tower", directory), "switches", "two_tower", directory)
    if not isinstance(switches, dict):
        raise PresetError(f"{path('two_tower', directory)}: chosen.switches must be a JSON object")
    return {k: tuple(v) if isinstance(v, list) else v for k, v in switches.items()}


def best_two_tower(*, directory: str | Path | None = None, **changes: Any) -> RunConfig:
    """Notebook 06's best two-tower on the report's split (``best_switches`` on ``RunConfig()``), with ``changes``."""
    switches = best_switches(directory)
    config = _config("two_tower", "chosen.switches", directory, lambda: RunConfig().replace(**switches))
    return config.replace(**changes)


def ease_lambda(directory: str | Path | None = None) -> float:
    """EASE's regularisation chosen over ``make tune``'s folds."""
    return float(_entry(read_chosen("two_tower", directory), "ease_lambda", "two_tower", directory))


# ----------------------------------------------------------------------------------------------- ranking stage


def rating_shared(directory: str | Path | None = None) -> dict[str, Any]:
    """The run settings every rating model shares (the optimisation, by ``RunConfig`` field name)."""
    return dict(_entry(read_chosen("ranking", directory), "shared", "ranking", directory))


def rating_models(directory: str | Path | None = None) -> dict[str, RunConfig]:
    """The rating models of notebook 08, by name, in the table's order: each a ``RatingSpec`` on a ``RunConfig``
    with the shared optimisation (``make ranking-tune`` chose each one's penalty)."""
    chosen = read_chosen("ranking", directory)
    shared = rating_shared(directory)
    models = {}
    for index, entry in enumerate(_entry(chosen, "rating_models", "ranking", directory)):
        where = f"chosen.rating_models[{index}]"

        def build(entry=entry):
            spec = RatingSpec(**{k: v for k, v in entry["model"].items() if k != "family"})
            return RunConfig(spec, **shared)

        if not isinstance(entry, dict) or "name" not in entry or "model" not in entry:
            raise PresetError(f"{path('ranking', directory)}: {where} needs a 'name' and a 'model'")
        models[entry["name"]] = _config("ranking", f"{where} ({entry['name']})", directory, build)
    return models


def rating_model(name: str, *, directory: str | Path | None = None, **changes: Any) -> RunConfig:
    """One rating model of ``rating_models`` by name, with ``changes`` (``seed``, ``epochs``, ``embedding_dim``...)."""
    models = rating_models(directory)
    if name not in models:
        raise PresetError(f"no rating model {name!r} in {path('ranking', directory)}; it has {', '.join(models)}")
    return models[name].replace(**changes)


def rating_baselines(directory: str | Path | None = None) -> dict[str, dict[str, Any]]:
    """The rating baselines' settings by name, in the table's order (``make ranking-tune``)."""
    entries = _entry(read_chosen("ranking", directory), "baselines", "ranking", directory)
    try:
        return {entry["name"]: dict(entry["settings"]) for entry in entries}
    except (TypeError, KeyError):
        raise PresetError(
            f"{path('ranking', directory)}: chosen.baselines: each needs a 'name' and 'settings'"
        ) from None


def two_stage(directory: str | Path | None = None) -> dict[str, Any]:
    """The two stages' choices: ``{"blend": {"N", "w"}, "learned": {"N", "layers"}, "pipeline": prefix}``."""
    chosen = read_chosen("ranking", directory)
    blend = dict(_entry(chosen, "blend", "ranking", directory))
    learned = dict(_entry(chosen, "learned", "ranking", directory))
    learned["layers"] = tuple(learned.get("layers", ()))
    return {"blend": blend, "learned": learned, "pipeline": _entry(chosen, "pipeline", "ranking", directory)}


# ----------------------------------------------------------------------------------------------- multitask


def multitask_head(directory: str | Path | None = None) -> dict[str, Any]:
    """The rating head chosen by the rating-only model's validation RMSE: ``rating_layers``, ``rating_l2``."""
    head = dict(_entry(read_chosen("multitask", directory), "head", "multitask", directory))
    return {k: tuple(v) if isinstance(v, list) else v for k, v in head.items()}


def rating_only_switches(directory: str | Path | None = None) -> dict[str, Any]:
    """The rating-only model's own changes (its tower L2)."""
    return dict(_entry(read_chosen("multitask", directory), "rating_only", "multitask", directory))


def joint_weights(directory: str | Path | None = None) -> dict[str, Any]:
    """The joint point chosen on validation: ``retrieval_weight``, ``rating_weight`` (and any other change)."""
    return dict(_entry(read_chosen("multitask", directory), "joint", "multitask", directory))


def multitask_model(*, directory: str | Path | None = None, **changes: Any) -> RunConfig:
    """Notebook 07's joint model: the best two-tower's run and towers with the chosen rating head and the
    chosen task weights (``MultitaskSpec``); ``changes`` override any of it."""
    best = best_two_tower(directory=directory)
    head, joint = multitask_head(directory), joint_weights(directory)

    def build():
        retrieval = {name: getattr(best.model, name) for name in RetrievalSpec.field_names()}
        return best.replace(model=MultitaskSpec(**retrieval, **head, **joint))

    return _config("multitask", "chosen.head / chosen.joint", directory, build).replace(**changes)


# ----------------------------------------------------------------------------------------------- sequence


def sequence_shared(directory: str | Path | None = None) -> dict[str, Any]:
    """The settings every sequence tower shares (optimisation, negatives, dimension), by ``replace`` name."""
    return dict(_entry(read_chosen("sequence", directory), "shared", "sequence", directory))


def _protocol(protocol: str, directory) -> dict[str, Any]:
    if protocol not in PROTOCOLS:
        raise PresetError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    return dict(_entry(read_chosen("sequence", directory), protocol, "sequence", directory))


def sequence_model(protocol: str, *, directory: str | Path | None = None, **changes: Any) -> RunConfig:
    """The sequence tower validation chose for ``protocol`` ("leave_latest" or "leave_one_out") with its epochs,
    on the shared settings; ``changes`` override any of it (``history_length=``, ``epochs=``, ``seed=``...)."""
    chosen, shared = _protocol(protocol, directory), sequence_shared(directory)

    def build():
        tower = SequenceTower(**chosen["user_tower"])
        return RunConfig().replace(**shared, user_tower=tower, epochs=chosen["epochs"])

    return _config("sequence", f"chosen.{protocol}", directory, build).replace(**changes)


def sequence_next_item(directory: str | Path | None = None) -> dict[str, Any]:
    """Notebook 09's tower trained SASRec's way: ``{"user_tower", "history_length", "blocks", "dropout",
    "embedding_dim", "learning_rate", "batch_size", "max_epochs", "patience"}``."""
    return dict(_entry(read_chosen("sequence", directory), "next_item", "sequence", directory))


def sequence_baselines(protocol: str, directory: str | Path | None = None) -> dict[str, Any]:
    """The baselines' settings chosen on ``protocol``'s validation: ``{"ease_lambda", "recency": {"lambda", "a",
    "tau"}}`` (the choices ``experiments.sequence.choose_baselines`` makes)."""
    return dict(_entry(_protocol(protocol, directory), "baselines", "sequence", directory))


# ----------------------------------------------------------------------------------------------- dimension


def chosen_embedding_dim(directory: str | Path | None = None) -> int:
    """The embedding dimension ``make sweep`` chose on validation for the report's recipe."""
    value = _entry(read_chosen("dimension", directory), "embedding_dim", "dimension", directory)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise PresetError(f"{path('dimension', directory)}: chosen.embedding_dim must be a positive whole number")
    return value
