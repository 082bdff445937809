"""notebook.summary: the closing "What we learned" cell."""

import pytest
from IPython.display import Markdown

from twotower_utils.notebook.summary import summary_markdown, what_we_learned


def test_summary_is_a_heading_and_one_line_per_bullet():
    text = summary_markdown([f"top-10 is {0.1234:.3f}", " two ", "three"])
    assert text == "## What we learned\n\n- top-10 is 0.123\n- two\n- three"


def test_what_we_learned_renders_markdown():
    shown = what_we_learned("a", "b", "c", title="Summary")
    assert isinstance(shown, Markdown) and shown.data.startswith("## Summary\n")


@pytest.mark.parametrize("bullets", [["a", "b"], list("abcdefg"), ["a", "", "c"]])
def test_three_to_six_non_empty_bullets(bullets):
    with pytest.raises(ValueError):
        summary_markdown(bullets)
