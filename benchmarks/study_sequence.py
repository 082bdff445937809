"""Study: sequence towers trained SASRec's way (every position predicts the next movie) against recency-weighted EASE.

    python benchmarks/study_sequence.py [--protocols leave_one_out leave_latest] [--seeds 0 1 2] [--unseen]
        [--kinds sasrec gru] [--output results/sequence/study_sequence.json]

For each temporal protocol (``experiments.sequence``: leave-one-out, leave-latest-out 80/20 per user by time) the
validation is carved inside training exactly as notebook 10 carves it (``sequence.validation_for``: each user's
last training ratings held out).  On it, and never on test:

* recency-weighted EASE's and EASE's settings (``sequence.choose_baselines``);
* each tower (``--kinds``) is trained with ``models.sequential`` (the user's whole sequence in one causal pass,
  full-catalogue softmax cross-entropy at every position) and early-stopped on validation filtered HR@10
  (``--patience`` epochs, at most ``--max-epochs``); the best epoch's weights are kept;
* the tower's settings: a small grid (``--grid``: L, blocks, dropout, dimension) run on the first seed, the
  best by validation HR@10 used for every seed;
* the hybrid ``alpha z(tower) + (1 - alpha) z(recency-weighted EASE)`` (both scores standardised per user over
  the catalogue), alpha on a grid of 0.1 steps.

Test: the early-stopped tower (trained on the validation's training part; ``--refit`` retrains on the whole
training part for the best epoch count) reads each user's whole training history, the baselines are fitted on
the whole training part; filtered HR@10, NDCG@10 and HR@100 (``sequence.measures``).  ``--unseen`` adds the
global time cut's users without a training rating (``sequence.unseen_queries``), each test rating scored from the
user's earlier test-period ratings, with leave-latest-out's tower settings and its validation carving on the time
cut's training part.

Prints each protocol's table (mean ± std over seeds and every seed) and writes the numbers, the choices, the
validation curves (HR@10 per epoch up to the stop) and the epoch times to ``--output``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

ALPHAS = tuple(round(a, 2) for a in np.linspace(0.0, 1.0, 11))
DEFAULT_GRID = ("L=200,blocks=2,dropout=0.2,dim=64", "L=50,blocks=2,dropout=0.5,dim=64")
GRU_GRID = ("L=200,dropout=0.2,dim=64",)


def parse_setting(text: str) -> dict:
    """``"L=200,blocks=2,dropout=0.2,dim=64"`` -> ``{"L": 200, "blocks": 2, "dropout": 0.2, "dim": 64}``."""
    setting = {"L": 200, "blocks": 2, "dropout": 0.2, "dim": 64}
    for part in filter(None, text.split(",")):
        key, value = part.split("=")
        setting[key.strip()] = float(value) if key.strip() == "dropout" else int(value)
    return setting


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def standardised(scores: np.ndarray) -> np.ndarray:
    """Each row's scores over the catalogue (columns 1..M) as z-scores; column 0 (out of vocabulary) stays 0."""
    body = np.asarray(scores, np.float64)[:, 1:]
    z = (body - body.mean(axis=1, keepdims=True)) / np.maximum(body.std(axis=1, keepdims=True), 1e-12)
    return np.concatenate([np.zeros((len(z), 1)), z], axis=1)


def blend(tower: np.ndarray, ease: np.ndarray, alpha: float) -> np.ndarray:
    return alpha * standardised(tower) + (1 - alpha) * standardised(ease)


def choose_alpha(tower: np.ndarray, ease: np.ndarray, exclude, validation: pd.DataFrame, measures) -> tuple:
    """The blend weight with the best validation HR@10 (ties: the larger alpha) and every alpha's HR@10."""
    z_tower, z_ease = standardised(tower), standardised(ease)
    found = {a: measures(a * z_tower + (1 - a) * z_ease, exclude, validation)["HR@10"] for a in ALPHAS}
    return max(found, key=lambda a: (found[a], a)), found


class Study:
    def __init__(self, args: argparse.Namespace) -> None:
        from twotower_utils.experiments import sequence as sq
        from twotower_utils.experiments.workflow import load_data

        self.args = args
        self.sq = sq
        self.data = load_data(args.data_dir)

    # --- one tower ---------------------------------------------------------------------------------------------

    def train_tower(self, kind: str, setting: dict, seed: int, fit, early) -> dict:
        """Train ``kind`` with ``setting`` on ``fit`` (a frame) with early stopping on ``early``
        (``(train, test)`` frames), the best epoch's weights kept.  Returns the two-tower and the curve."""
        import twotower_utils as tt
        from twotower_utils.evaluation.counting import filtered_topk_accuracy
        from twotower_utils.models.sequential import EarlyStopping, NextItemModel, fit_next_item, next_item_sequences
        from twotower_utils.training import build_for

        args = self.args
        changes = {"user_tower": kind, "history_length": setting["L"], "dropout": setting["dropout"]}
        if kind == "sasrec":
            changes["blocks"] = setting["blocks"]
        config = tt.RunConfig().replace(
            optimizer="adam",
            learning_rate=args.learning_rate,
            embedding_dim=setting["dim"],
            negatives="catalogue",
            seed=seed,
            **changes,
        )
        model = build_for(config, self.data, fit)
        trainer = NextItemModel(
            model.user_tower,
            model.movie_tower,
            loss=args.loss,
            negatives=args.negatives,
            sampling="popularity" if args.loss == "sampled" else "uniform",
            popularity=np.bincount(fit["movie_idx"], minlength=self.data.num_movies + 1),
            seed=seed,
        )
        sequences = next_item_sequences(fit, setting["L"], targets_ahead=setting.get("ahead", 1))
        history, test = early

        def score() -> float:
            return filtered_topk_accuracy(model, history, test, [10])[10]

        stopper = EarlyStopping(score, patience=args.patience, log=lambda m: log(f"    {kind} seed {seed}: {m}"))
        started = time.perf_counter()
        fit_next_item(
            trainer,
            sequences,
            args.max_epochs,
            batch_size=args.batch_size,
            learning_rate=args.learning_rate,
            seed=seed,
            callbacks=[stopper],
        )
        report = stopper.report()
        report["seconds"] = time.perf_counter() - started
        report["sequences"] = len(sequences["history"])
        log(
            f"  {kind} {setting} seed {seed}: best validation HR@10 {report['best']:.4f} at epoch "
            f"{report['best_epoch']} of {report['epochs']} ({np.median(report['epoch_seconds']):.1f} s an epoch, "
            f"{report['seconds']:.0f} s in all)"
        )
        return {"model": model, "trainer": trainer, "report": report, "config": config, "setting": setting}

    def refit(self, run: dict, frame: pd.DataFrame, seed: int) -> None:
        """Retrain the run's settings on ``frame`` for its best epoch count (``--refit``), in place."""
        from twotower_utils.models.sequential import NextItemModel, fit_next_item, next_item_sequences
        from twotower_utils.training import build_for

        model = build_for(run["config"], self.data, frame)
        trainer = NextItemModel(model.user_tower, model.movie_tower, seed=seed)
        sequences = next_item_sequences(frame, run["setting"]["L"], targets_ahead=run["setting"].get("ahead", 1))
        fit_next_item(
            trainer, sequences, max(1, run["report"]["best_epoch"]), self.args.batch_size, self.args.learning_rate, seed
        )
        run["model"] = model

    # --- one protocol ------------------------------------------------------------------------------------------

    def protocol(self, protocol: str) -> dict:
        from twotower_utils.evaluation import baselines
        from twotower_utils.evaluation.metrics import model_scores

        sq, data, args = self.sq, self.data, self.args
        split = sq.protocol_split(data, protocol)
        validation = sq.validation_for(split, protocol)
        started = time.perf_counter()
        choices = sq.choose_baselines(data, validation)
        recency = choices["recency"]
        log(
            f"{protocol}: baselines chosen on validation in {time.perf_counter() - started:.0f} s: EASE lambda "
            f"{choices['ease_lambda']:g}; recency-weighted EASE {recency}"
        )
        val_exclude = sq.seen(validation.train, data)
        val_histories = sq.user_histories(validation.train, data.num_users)
        val_ease = baselines.recency_ease_scores(
            validation.train,
            val_histories,
            data.num_users,
            data.num_movies,
            recency["lambda"],
            recency["a"],
            recency["tau"],
        )
        histories = sq.user_histories(split.train, data.num_users)
        exclude = sq.seen(split.train, data)
        base = sq.baseline_scores(data, split.train, histories, choices)
        runs: dict[str, list[dict]] = {name: [sq.measures(s, exclude, split.test)] for name, s in base.items()}
        recency_name = next(n for n in base if n.startswith(sq.RECENCY_EASE))
        test_ease = base[recency_name]
        found: dict = {"choices": _plain(choices), "towers": {}}
        grids = {"sasrec": args.grid, "gru": args.gru_grid}
        for kind in args.kinds:
            grid = [parse_setting(s) for s in grids[kind]]
            if protocol == "leave_latest" and args.targets_ahead > 1:
                grid += [{**g, "ahead": args.targets_ahead} for g in grid[:1]]
            first = args.seeds[0]
            trials = [
                self.train_tower(kind, s, first, validation.train, (validation.train, validation.test)) for s in grid
            ]
            best = max(trials, key=lambda t: t["report"]["best"])
            setting = best["setting"]
            log(f"{protocol}: {kind}: chose {setting} on validation")
            tower_runs, hybrid_runs, details = [], [], []
            for seed in args.seeds:
                run = (
                    best
                    if seed == first
                    else self.train_tower(kind, setting, seed, validation.train, (validation.train, validation.test))
                )
                val_scores = model_scores(run["model"], validation.train)
                alpha, alphas = choose_alpha(val_scores, val_ease, val_exclude, validation.test, sq.measures)
                if args.refit:
                    self.refit(run, split.train, seed)
                scores = model_scores(run["model"], split.train)
                tower_runs.append(sq.measures(scores, exclude, split.test))
                hybrid_runs.append(sq.measures(blend(scores, test_ease, alpha), exclude, split.test))
                details.append(
                    {
                        "seed": seed,
                        "alpha": alpha,
                        "alpha_validation": alphas,
                        **{k: v for k, v in run["report"].items()},
                    }
                )
                log(
                    f"{protocol}: {kind} seed {seed}: test HR@10 {tower_runs[-1]['HR@10']:.4f}, hybrid (alpha "
                    f"{alpha}) {hybrid_runs[-1]['HR@10']:.4f}; recency-weighted EASE {runs[recency_name][0]['HR@10']:.4f}"
                )
            name = f"{kind} all positions ({_describe(setting, kind)})"
            runs[name] = tower_runs
            runs[f"hybrid: {name} + recency-weighted EASE"] = hybrid_runs
            found["towers"][kind] = {
                "setting": setting,
                "grid": [{"setting": t["setting"], **t["report"]} for t in trials],
                "seeds": details,
            }
        found["runs"] = runs
        return found

    def unseen(self, setting: dict, kind: str, choices: dict) -> dict:
        """The time cut's users without training ratings (leave-latest-out's tower settings and baselines)."""
        from twotower_utils.data.splits import hold_out_latest
        from twotower_utils.evaluation import baselines
        from twotower_utils.evaluation.metrics import model_scores

        sq, data, args = self.sq, self.data, self.args
        queries = sq.unseen_queries(data)
        split, histories, exclude, test = queries["split"], queries["histories"], queries["exclude"], queries["test"]
        validation = hold_out_latest(split.train, sq.PROTOCOLS["leave_latest"], "validation")
        base = sq.baseline_scores(data, split.train, histories, choices)
        runs = {name: [sq.measures(s, exclude, test)] for name, s in base.items()}
        recency_name = next(n for n in base if n.startswith(sq.RECENCY_EASE))
        recency = choices["recency"]
        val_ease = baselines.recency_ease_scores(
            validation.train,
            sq.user_histories(validation.train, data.num_users),
            data.num_users,
            data.num_movies,
            recency["lambda"],
            recency["a"],
            recency["tau"],
        )
        val_exclude = sq.seen(validation.train, data)
        tower_runs, hybrid_runs, details = [], [], []
        for seed in args.seeds:
            run = self.train_tower(kind, setting, seed, validation.train, (validation.train, validation.test))
            alpha, _ = choose_alpha(
                model_scores(run["model"], validation.train), val_ease, val_exclude, validation.test, sq.measures
            )
            if args.refit:
                self.refit(run, split.train, seed)
            length = setting["L"]
            users = run["model"].user_tower.embed(histories[:, -length:])
            scores = users @ run["model"].movie_tower.embed_all().numpy().T
            tower_runs.append(sq.measures(scores, exclude, test))
            hybrid_runs.append(sq.measures(blend(scores, base[recency_name], alpha), exclude, test))
            details.append({"seed": seed, "alpha": alpha, **run["report"]})
            log(
                f"unseen: {kind} seed {seed}: HR@10 {tower_runs[-1]['HR@10']:.4f}, hybrid {hybrid_runs[-1]['HR@10']:.4f}"
            )
        name = f"{kind} all positions ({_describe(setting, kind)})"
        runs[name] = tower_runs
        runs[f"hybrid: {name} + recency-weighted EASE"] = hybrid_runs
        return {"runs": runs, "seeds": details, "test": len(test), "share": queries["share"]}


def _describe(setting: dict, kind: str = "sasrec") -> str:
    parts = [f"L {setting['L']}", f"d {setting['dim']}", f"dropout {setting['dropout']:g}"]
    if kind == "sasrec":
        parts.insert(1, f"{setting['blocks']} blocks")
    if setting.get("ahead", 1) > 1:
        parts.append(f"{setting['ahead']} ahead")
    return ", ".join(parts)


def _plain(value):
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    return value


def print_table(title: str, runs: dict[str, list[dict]]) -> None:
    print(f"\n{title}")
    print(f"{'model':<78} {'HR@10':>17} {'NDCG@10':>17}  every seed (HR@10 / NDCG@10)")
    for name, values in runs.items():
        hr = np.array([r["HR@10"] for r in values])
        nd = np.array([r["NDCG@10"] for r in values])
        seeds = "  ".join(f"{h:.4f}/{n:.4f}" for h, n in zip(hr, nd, strict=True))
        print(f"{name[:78]:<78} {hr.mean():.4f} ± {hr.std():.4f} {nd.mean():.4f} ± {nd.std():.4f}  {seeds}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--protocols", nargs="+", default=["leave_one_out", "leave_latest"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--kinds", nargs="+", choices=("sasrec", "gru"), default=["sasrec", "gru"])
    parser.add_argument("--grid", nargs="+", default=list(DEFAULT_GRID), help="SASRec settings tried on seed 0")
    parser.add_argument("--gru-grid", nargs="+", default=list(GRU_GRID), help="GRU settings tried on seed 0")
    parser.add_argument("--max-epochs", type=int, default=200)
    parser.add_argument("--patience", type=int, default=10)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--loss", choices=("softmax", "sampled"), default="softmax")
    parser.add_argument("--negatives", type=int, default=0, help="sampled softmax: negatives per batch")
    parser.add_argument("--targets-ahead", type=int, default=1, help="leave_latest: also try k next movies")
    parser.add_argument("--refit", action="store_true", help="retrain on the whole training part for the test")
    parser.add_argument("--unseen", action="store_true", help="also the time cut's users without training ratings")
    parser.add_argument("--output", type=Path, default=Path("results/sequence/study_sequence.json"))
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args(argv)

    started = time.perf_counter()
    study = Study(args)
    report: dict = {"command": sys.argv, "arguments": _plain(vars(args) | {"output": str(args.output)})}
    for protocol in args.protocols:
        report[protocol] = study.protocol(protocol)
        print_table(f"{protocol} (test, filtered)", report[protocol]["runs"])
    if args.unseen and "leave_latest" in report:
        latest = report["leave_latest"]
        kind = args.kinds[0]
        report["unseen"] = study.unseen(latest["towers"][kind]["setting"], kind, latest["choices"])
        print_table("unseen users of the time cut (test, filtered)", report["unseen"]["runs"])
    report["seconds"] = time.perf_counter() - started
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(_plain(report), indent=1))
    log(f"wrote {args.output} in {report['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
