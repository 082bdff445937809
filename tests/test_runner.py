import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from twotower_utils.notebook.runner import main, numbered_notebooks, parse_parameters


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
