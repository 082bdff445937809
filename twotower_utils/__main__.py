"""The package's command line: ``python -m twotower_utils <command> [options]``.

Each command is one module's ``main`` (or the function named after a colon, ``module:function``);
``python -m twotower_utils <command> --help`` shows its options.  The tuning commands (``sweep``, ``tune``,
``ranking``, ``sequence``, ``multitask``) write what they choose to the presets (``twotower_utils/presets/``).
"""

from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "run": ("twotower_utils.notebook.runner", "run the numbered notebooks headless (make run-notebooks)"),
    "sweep": (
        "twotower_utils.experiments.sweep",
        "sweep the embedding dimension, chosen on validation -> presets/dimension.json (make sweep)",
    ),
    "tune": (
        "twotower_utils.experiments.tuning",
        "k-fold validation of two-tower configs and EASE -> presets/two_tower.json (make tune)",
    ),
    "export": ("twotower_utils.experiments.release", "export the best two-tower as a SavedModel (make export)"),
    "recommend": ("twotower_utils.serving.cli:recommend_main", "top-k movies for user ids from an export"),
    "similar": ("twotower_utils.serving.cli:similar_main", "movies like a movie, from an export"),
    "ranking": (
        "twotower_utils.experiments.ranking_stage",
        "validation choices of the ranking stage: rating models, baselines, re-rankers -> presets/ranking.json "
        "(make ranking-tune)",
    ),
    "sequence": (
        "twotower_utils.experiments.sequence",
        "validation choices of the sequence user towers and history baselines -> presets/sequence.json "
        "(make sequence-tune)",
    ),
    "distributed": (
        "twotower_utils.distributed",
        "train on a tf.distribute strategy: several devices, or this machine's role in TF_CONFIG",
    ),
    "headline": (
        "twotower_utils.experiments.headline",
        "the README's headline table: four models, filtered HR@10 over 3 model seeds (make headline)",
    ),
    "multitask": (
        "twotower_utils.experiments.multitask_sweep",
        "validation choices of the multitask model: rating head, task weights -> presets/multitask.json "
        "(make multitask-tune)",
    ),
}


def usage() -> str:
    lines = ["usage: python -m twotower_utils <command> [options]", "", "commands:"]
    lines += [f"  {name:<10} {summary}" for name, (_, summary) in COMMANDS.items()]
    lines += ["", "python -m twotower_utils <command> --help shows a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"error: unknown command {command!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module_name, _, function = COMMANDS[command][0].partition(":")
    module = importlib.import_module(module_name)
    return getattr(module, function or "main")(rest)


if __name__ == "__main__":
    sys.exit(main())
