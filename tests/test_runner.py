import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from twotower_utils.notebook.runner import main, numbered_notebooks, parameters_table, parse_parameters


def test_parse_parameters_converts_numbers_and_flags():
    assert parse_parameters(["embedding_dim=64", "learning_rate=0.05", "split=temporal", "widgets=false"]) == {
        "embedding_dim": 64,
        "learning_rate": 0.05,
        "split": "temporal",
        "widgets": False,
    }
    with pytest.raises(SystemExit):
        parse_parameters(["embedding_dim"])


def _notebook(path, source):
    cell = new_code_cell("value = 1\noutput_dir = None")
    cell.metadata["tags"] = ["parameters"]
    nb = new_notebook(cells=[cell, new_code_cell(source)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


def test_runs_numbered_notebooks_in_order_and_stops_at_an_error(tmp_path, capsys):
    notebooks = tmp_path / "nb"
    notebooks.mkdir()
    _notebook(notebooks / "01_ok.ipynb", "print(value * 2)")
    _notebook(notebooks / "02_broken.ipynb", "raise ValueError('embedding_dim must be positive')")
    _notebook(notebooks / "03_never.ipynb", "print('unreached')")
    (notebooks / "helper.ipynb").write_text("not a numbered notebook")
    assert [p.name for p in numbered_notebooks(notebooks)] == ["01_ok.ipynb", "02_broken.ipynb", "03_never.ipynb"]
    out = tmp_path / "out"
    code = main(["--notebooks", str(notebooks), "--output-dir", str(out), "--kernel", "python3", "-p", "value=21"])
    assert code == 1
    error = capsys.readouterr().err
    assert "02_broken.ipynb failed" in error and "embedding_dim must be positive" in error
    executed = nbformat.read(out / "executed" / "01_ok.ipynb", as_version=4)
    assert executed.cells[-1].outputs[0]["text"].strip() == "42"
    assert (out / "executed" / "02_broken.ipynb").exists()
    assert not (out / "executed" / "03_never.ipynb").exists()


def test_no_notebooks_is_an_error(tmp_path):
    assert main(["--notebooks", str(tmp_path), "--output-dir", str(tmp_path / "out")]) == 1


def _parameters_notebook(path, parameters_source, source="print('ran')"):
    cell = new_code_cell(parameters_source)
    cell.metadata["tags"] = ["parameters"]
    nb = new_notebook(cells=[cell, new_code_cell(source)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


@pytest.fixture
def two_notebooks(tmp_path):
    folder = tmp_path / "nb"
    folder.mkdir()
    _parameters_notebook(folder / "01_a.ipynb", 'embedding_dim = 32\nrate = 0.1\nsplit = "random"\noutput_dir = None')
    _parameters_notebook(
        folder / "02_b.ipynb", 'embedding_dim = 32\nsweep_dims = "8 32"\nwidgets = True\noutput_dir = None'
    )
    return folder


def test_a_misspelt_parameter_stops_before_anything_runs(two_notebooks, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["--notebooks", str(two_notebooks), "--output-dir", str(out), "-p", "embeding_dim=16"])
    assert code == 2 and not out.exists()  # nothing ran
    error = capsys.readouterr().err
    assert "unknown parameter 'embeding_dim'" in error and "Did you mean 'embedding_dim'?" in error
    assert "valid parameters: embedding_dim, rate, split, sweep_dims, widgets" in error
    assert main(["--notebooks", str(two_notebooks), "--output-dir", str(out), "-p", "output_dir=x"]) == 2
    assert "use --output-dir" in capsys.readouterr().err


def test_a_value_of_the_wrong_type_stops_with_the_notebook_and_default(two_notebooks, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["--notebooks", str(two_notebooks), "--output-dir", str(out), "-p", "embedding_dim=abc"]) == 2
    assert "embedding_dim='abc': 01_a.ipynb expects a whole number (its default is 32)" in capsys.readouterr().err
    assert main(["--notebooks", str(two_notebooks), "--output-dir", str(out), "-p", "widgets=3"]) == 2
    assert "02_b.ipynb expects true or false" in capsys.readouterr().err


def test_each_notebook_gets_only_its_own_parameters_as_its_types(two_notebooks):
    from twotower_utils.notebook.runner import plan_parameters

    notebooks = numbered_notebooks(two_notebooks)
    plan = plan_parameters(parse_parameters(["embedding_dim=16", "rate=1", "sweep_dims=8", "widgets=false"]), notebooks)
    assert plan[notebooks[0]] == {"embedding_dim": 16, "rate": 1.0}
    assert type(plan[notebooks[0]]["rate"]) is float
    assert plan[notebooks[1]] == {"embedding_dim": 16, "sweep_dims": "8", "widgets": False}


def test_study_values_go_to_the_notebooks_that_have_them_and_p_still_wins(two_notebooks, tmp_path, monkeypatch):
    from twotower_utils.notebook import runner

    monkeypatch.setattr(runner, "STUDY", {"rate": 0.5, "sweep_dims": "8 16 32", "seeds": 3})
    notebooks = numbered_notebooks(two_notebooks)
    assert runner.study_parameters(notebooks) == {"rate": 0.5, "sweep_dims": "8 16 32"}  # no notebook has seeds
    assert runner.study_parameters(notebooks[:1]) == {"rate": 0.5}
    seen = []
    monkeypatch.setattr(runner, "run_notebook", lambda notebook, out, parameters, *a, **k: seen.append(parameters) or 0)
    assert (
        main(["--notebooks", str(two_notebooks), "--output-dir", str(tmp_path / "out"), "--study", "-p", "rate=2"]) == 0
    )
    assert seen == [{"rate": 2.0}, {"sweep_dims": "8 16 32"}]


def test_every_series_parameter_of_the_makefile_smoke_test_and_study_exists():
    from tests.conftest import NOTEBOOKS, SMALL
    from twotower_utils.notebook.runner import STUDY, plan_parameters

    plan_parameters(SMALL, numbered_notebooks(NOTEBOOKS))  # raises on a name no notebook has
    plan_parameters(STUDY, numbered_notebooks(NOTEBOOKS))
    for name in ("embedding_dim", "epochs", "learning_rate", "batch_size", "seed"):
        plan_parameters({name: 1}, numbered_notebooks(NOTEBOOKS))


@pytest.mark.parametrize(
    ("signum", "whole_group"),
    [("SIGINT", False), ("SIGTERM", False), ("SIGINT", True)],  # True: Ctrl-C, which the kernel gets too
)
def test_an_interrupted_run_keeps_finished_results_and_the_next_run_works(tmp_path, signum, whole_group):
    import json
    import os
    import signal
    import subprocess
    import sys
    import time

    import psutil

    folder = tmp_path / "nb"
    folder.mkdir()
    record = "from twotower_utils.results import record_metrics\nrecord_metrics(output_dir, '01_a', {'value': 1})"
    _parameters_notebook(folder / "01_a.ipynb", "output_dir = None", record)
    _parameters_notebook(folder / "02_slow.ipynb", "pause = 120\noutput_dir = None", "import time\ntime.sleep(pause)")
    out = tmp_path / "out"
    command = [sys.executable, "-m", "twotower_utils", "run", "--notebooks", str(folder), "--output-dir", str(out)]
    runner = subprocess.Popen(
        [*command, "--kernel", "python3"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while not (out / "executed" / ".02_slow.running.ipynb").exists():  # the slow notebook's kernel is running
        assert runner.poll() is None and time.monotonic() < deadline, runner.communicate()
        time.sleep(0.2)
    time.sleep(2)
    kernels = psutil.Process(runner.pid).children(recursive=True)
    assert kernels
    if whole_group:
        os.killpg(runner.pid, getattr(signal, signum))
    else:
        runner.send_signal(getattr(signal, signum))
    _, err = runner.communicate(timeout=60)
    assert runner.returncode == 128 + getattr(signal, signum), err
    assert "interrupted" in err and "Traceback" not in err and "Kernel died" not in err
    metrics = json.loads((out / "metrics.json").read_text())  # valid JSON, the finished notebook's section kept
    assert metrics["01_a"] == {"value": 1} and set(metrics["run"]["seconds_per_notebook"]) == {"01_a"}
    assert sorted(p.name for p in (out / "executed").iterdir()) == ["01_a.ipynb"]  # no partial copy
    psutil.wait_procs(kernels, timeout=10)
    assert not [k for k in kernels if k.is_running() and k.status() != psutil.STATUS_ZOMBIE], "a kernel was left"
    again = subprocess.run([*command, "--kernel", "python3", "-p", "pause=0"], capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["01_a"] == {"value": 1} and set(metrics["run"]["seconds_per_notebook"]) == {"01_a", "02_slow"}


def test_the_parameters_table_lists_who_reads_what(two_notebooks, capsys):
    table = parameters_table(numbered_notebooks(two_notebooks))
    lines = table.splitlines()
    assert lines[0] == "| parameter | notebooks: default | `make study` | what it sets |"
    assert "| `embedding_dim` | 01, 02: `32` |  |  |" in lines and '| `sweep_dims` | 02: `"8 32"` |  |  |' in lines
    assert not any("output_dir" in line for line in lines)  # the runner sets it
    assert main(["--notebooks", str(two_notebooks), "--parameters-table"]) == 0
    assert capsys.readouterr().out.strip() == table


def test_the_series_parameters_table():
    from tests.conftest import NOTEBOOKS

    rows = {
        line.split("|")[1].strip(" `"): line
        for line in parameters_table(numbered_notebooks(NOTEBOOKS)).splitlines()[2:]
    }
    assert "02, 03, 04, 05: `32`" in rows["embedding_dim"] and "07" not in rows["embedding_dim"]
    assert "08: `64`" in rows["rating_embedding_dim"] and "06, 07: `128`" in rows["best_embedding_dim"]
    assert "01" not in rows["epochs"] and "06, 07, 10: `20`" in rows["best_epochs"]
