import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from tests.conftest import NOTEBOOKS
from twotower_utils.notebook import hygiene
from twotower_utils.notebook.runner import numbered_notebooks


def test_committed_notebooks_carry_no_outputs():
    assert hygiene.main([str(p) for p in numbered_notebooks(NOTEBOOKS)]) == 0


def test_outputs_are_found_and_cleared(tmp_path, capsys):
    cell = new_code_cell("print(1)", execution_count=3, outputs=[new_output("stream", name="stdout", text="1\n")])
    path = tmp_path / "01_x.ipynb"
    nbformat.write(new_notebook(cells=[new_markdown_cell("# x"), cell]), path)
    assert hygiene.main([str(path)]) == 1
    assert "cell 2: outputs, cell 2: execution count" in capsys.readouterr().err
    assert hygiene.main(["--fix", str(path)]) == 0
    assert hygiene.leftovers(nbformat.read(path, as_version=4)) == []
    assert hygiene.main([str(path)]) == 0
