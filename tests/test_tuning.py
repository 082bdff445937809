"""k-fold validation of configs and EASE on tiny synthetic data: folds, caching, grids, the CLI."""

import numpy as np
import pandas as pd
import pytest

from twotower_utils.config import ConfigError, MultitaskSpec
from twotower_utils.experiments import tuning


@pytest.fixture()
def quick(tiny_config):
    return tiny_config.replace(epochs=1)


def test_validation_folds_have_disjoint_validation_parts(tiny_split):
    folds = tuning.validation_folds(tiny_split.train, folds=3, fraction=0.2)
    parts = [set(map(tuple, f.test[["user_idx", "movie_idx"]].to_numpy())) for f in folds]
    assert all(a.isdisjoint(b) for i, a in enumerate(parts) for b in parts[i + 1 :])
    assert all(len(f.train) + len(f.test) == len(tiny_split.train) for f in folds)
    with pytest.raises(ValueError, match="folds must be"):
        tuning.validation_folds(tiny_split.train, folds=0)


def test_cross_validate_scores_each_fold_and_reuses_the_cache(tiny_data, tiny_split, quick, tmp_path, monkeypatch):
    folds = tuning.validation_folds(tiny_split.train, folds=2, fraction=0.2)
    scores = tuning.cross_validate(quick, tiny_data, folds, k=5, cache_dir=tmp_path)
    assert len(scores) == 2 and all(0.0 <= s <= 1.0 for s in scores)
    assert scores[0] == pytest.approx(tuning.fold_hit_rate(quick, tiny_data, folds[0], k=5))  # fold 0: seed unchanged
    assert sorted(p.name[:6] for p in tmp_path.iterdir()) == ["fold0-", "fold1-"]

    def no_training(*args, **kwargs):
        raise AssertionError("a cached fold was trained again")

    monkeypatch.setattr(tuning, "fold_hit_rate", no_training)
    assert tuning.cross_validate(quick, tiny_data, folds, k=5, cache_dir=tmp_path) == scores
    with pytest.raises(AssertionError, match="trained again"):  # another config is another cache entry
        tuning.cross_validate(quick.replace(learning_rate=0.1), tiny_data, folds, k=5, cache_dir=tmp_path)


def test_a_corrupt_cache_file_is_recomputed_not_a_crash(tiny_data, tiny_split, quick, tmp_path, monkeypatch):
    from twotower_utils.results import UnreadableFileWarning

    folds = tuning.validation_folds(tiny_split.train, folds=2, fraction=0.2)
    scores = tuning.cross_validate(quick, tiny_data, folds, k=5, cache_dir=tmp_path)
    fold0 = next(tmp_path.glob("fold0-*.json"))
    fold0.write_text(fold0.read_text()[:20])  # as if cut short by a full disk
    trained = []
    real = tuning.fold_hit_rate
    monkeypatch.setattr(tuning, "fold_hit_rate", lambda *a, **k: trained.append(1) or real(*a, **k))
    with pytest.warns(UnreadableFileWarning, match="moved it aside"):
        again = tuning.cross_validate(quick, tiny_data, folds, k=5, cache_dir=tmp_path)
    assert again == scores and len(trained) == 1  # only the unreadable fold is trained again
    assert len(list(tmp_path.glob("fold0-*.json.corrupt-*"))) == 1


def test_cross_validate_ease_gives_one_score_per_fold_and_lambda(tiny_data, tiny_split):
    folds = tuning.validation_folds(tiny_split.train, folds=2, fraction=0.2)
    found = tuning.cross_validate_ease(tiny_data, folds, lambdas=(1.0, 10.0), k=5)
    assert set(found) == {1.0, 10.0}
    assert all(len(v) == 2 and all(0.0 <= s <= 1.0 for s in v) for v in found.values())


def test_grid_configs_cross_every_axis_and_validate(quick):
    configs = tuning.grid_configs(quick, {"epochs": (1, 2), "learning_rate_schedule": ("constant", "cosine")})
    assert [(c.epochs, c.learning_rate_schedule) for c in configs] == [
        (1, "constant"),
        (1, "cosine"),
        (2, "constant"),
        (2, "cosine"),
    ]
    with pytest.raises(ConfigError, match="learning_rate_schedule"):
        tuning.grid_configs(quick, {"learning_rate_schedule": ("linear",)})


def test_run_grid_sorts_best_first(tiny_data, tiny_split, quick, tmp_path):
    folds = tuning.validation_folds(tiny_split.train, folds=2, fraction=0.2)
    table = tuning.run_grid(quick, tiny_data, folds, {"learning_rate": (0.5, 0.0001)}, k=5, log=lambda m: None)
    assert list(table.columns) == ["learning_rate", "mean", "std", "folds"]
    assert table["mean"].is_monotonic_decreasing
    assert table["mean"].iloc[0] == pytest.approx(np.mean(table["folds"].iloc[0]))


def test_parse_grid_types_values_and_rejects_unknown_fields():
    assert tuning._parse_grid(["epochs=10,20", "learning_rate=0.01", "learning_rate_schedule=cosine"]) == {
        "epochs": (10, 20),
        "learning_rate": (0.01,),
        "learning_rate_schedule": ("cosine",),
    }
    for bad in ("epoch=10", "epochs", "tower_layers=64"):
        with pytest.raises(ValueError):
            tuning._parse_grid([bad])


def test_cli_reports_a_bad_grid_in_one_line(capsys):
    assert tuning.main(["--grid", "epochs=ten"]) == 1
    assert capsys.readouterr().err.startswith("error:")


def test_folds_keep_row_order(tiny_split):
    fold = tuning.validation_folds(tiny_split.train, folds=2, fraction=0.2)[1]
    position = pd.Series(range(len(tiny_split.train)), index=tiny_split.train.index)
    merged = tiny_split.train.assign(position=position).merge(fold.train, on=list(tiny_split.train.columns))
    assert merged["position"].is_monotonic_increasing


def test_best_lambda_takes_the_best_mean_and_the_smaller_lambda_on_ties():
    assert tuning.best_lambda({1.0: [0.1, 0.3], 10.0: [0.25, 0.25], 100.0: [0.2, 0.2]}) == 10.0
    assert tuning.best_lambda({10.0: [0.2, 0.2], 1.0: [0.1, 0.3]}) == 1.0


def test_fold_keys_name_the_model_family_and_only_its_changed_fields(tiny_data, tiny_split, tiny_config):
    """Model fields at their defaults stay out of the key: a new default-off switch keeps cached folds valid."""
    fold = tuning.validation_folds(tiny_split.train, 2, 0.2)[1]
    key = tuning._fold_key(tiny_config, tiny_data, fold, 10)
    assert tuning._fold_key(tiny_config.replace(temperature=1.0), tiny_data, fold, 10) == key
    assert tuning._fold_key(tiny_config.replace(temperature=0.5), tiny_data, fold, 10) != key
    multitask = tiny_config.replace(model=MultitaskSpec(embedding_dim=8))
    assert tuning._fold_key(multitask, tiny_data, fold, 10) != key


def test_a_fold_cached_with_the_old_flat_config_is_ignored_in_one_line(tiny_data, tiny_split, quick, tmp_path, capsys):
    import json

    folds = tuning.validation_folds(tiny_split.train, folds=1, fraction=0.2)
    scores = tuning.cross_validate(quick, tiny_data, folds, k=5, cache_dir=tmp_path)
    cached = next(tmp_path.glob("fold0-*.json"))
    old = {"config": {"embedding_dim": 8, "epochs": 1, "ranking_head": "none"}, "fold": 0, "k": 5, "hit_rate": 2.0}
    cached.write_text(json.dumps(old))  # as an earlier version wrote it
    capsys.readouterr()
    assert tuning.cross_validate(quick, tiny_data, folds, k=5, cache_dir=tmp_path) == scores  # trained again
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "earlier version of twotower" in out and "computing it again" in out
    assert tuning.cross_validate(quick, tiny_data, folds, k=5, cache_dir=tmp_path) == scores  # and cached again
    assert capsys.readouterr().out == ""


def test_tuning_does_not_import_the_comparison():
    """The best two-tower comes from the presets: comparison imports tuning, never the other way round."""
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(tuning))
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    imported |= {f"{n.module}.{a.name}" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names}
    assert not any("comparison" in name for name in imported if name)
