"""A notebook's closing cell: "What we learned", written from the numbers its run computed.

Every bullet is an f-string over the notebook's own variables, so the summary can never disagree with
the outputs above it: ``what_we_learned(f"... {value:.3f} ...", ...)`` displays (in Jupyter) or returns
(as the cell's value) Markdown with a heading and 3-6 bullets.
"""

from __future__ import annotations

from IPython.display import Markdown

MIN_BULLETS, MAX_BULLETS = 3, 6


def summary_markdown(bullets, title: str = "What we learned") -> str:
    """``## title`` and one ``- bullet`` line per bullet (3-6 of them, each non-empty text)."""
    bullets = [str(b).strip() for b in bullets]
    if not MIN_BULLETS <= len(bullets) <= MAX_BULLETS:
        raise ValueError(f"a summary has {MIN_BULLETS} to {MAX_BULLETS} bullets, got {len(bullets)}")
    if not all(bullets):
        raise ValueError("a summary bullet is empty")
    return "\n".join([f"## {title}", "", *(f"- {b}" for b in bullets)])


def what_we_learned(*bullets: str, title: str = "What we learned") -> Markdown:
    """The summary as ``IPython.display.Markdown`` (a cell's last value renders it; papermill keeps it)."""
    return Markdown(summary_markdown(bullets, title))
