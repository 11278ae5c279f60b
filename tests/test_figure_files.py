"""The committed figures' tables as a paper takes them: LaTeX floats with a caption and a
label that fit a two-column page, bold only on a unique best, no negative zero; Markdown
tables without ``nan``."""

import re
from pathlib import Path

import pytest

from pedlib import plots

ROOT = Path(__file__).resolve().parent.parent
TEX = sorted((ROOT / "figures").rglob("*.tex"))
MARKDOWN = sorted(p for p in (ROOT / "figures").rglob("*.md") if p.name != "index.md")


def test_there_are_latex_tables_to_check():
    assert len(TEX) >= 8


@pytest.mark.parametrize("path", TEX, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_latex_table_is_a_float_with_caption_and_label_that_fits_a_two_column_page(path):
    text = path.read_text()
    environment = "table*" if "\\begin{table*}" in text else "table"
    assert f"\\begin{{{environment}}}[t]" in text and text.rstrip().endswith(f"\\end{{{environment}}}")
    assert re.search(r"^\\caption\{.{20,}\}$", text, re.M), "a caption"
    assert re.search(rf"^\\label\{{tab:{re.escape(path.stem)}\}}$", text, re.M), "a label named after the file"
    spec = re.search(r"\\begin\{tabular\}\{(l r*)\}".replace(" ", ""), text).group(1)
    header, body = text.split("\\midrule\n")
    rows = [line.removesuffix(" \\\\").split(" & ") for line in body.split("\\bottomrule")[0].splitlines()]
    rows.insert(0, header.strip().splitlines()[-1].removesuffix(" \\\\").split(" & "))
    assert {len(row) for row in rows} == {len(spec)}, "every row has a cell per column"
    for column in range(1, len(spec)):
        assert sum("\\textbf" in row[column] for row in rows) <= 1, "bold on a unique best only"
    assert not re.search(r"\$-\$0\.0+(?![0-9]*[1-9])", text), "no negative zero"
    limit = plots.TEXT_WIDTH_CM if environment == "table*" else plots.COLUMN_WIDTH_CM
    assert plots.latex_width_cm(rows) <= limit
    assert not set(rows[0][1:]) & {"flowers12", "cifar10", "mnist5k", "digits", "lfw", "mean"}, "readable headers"


@pytest.mark.parametrize("path", MARKDOWN, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_markdown_table_prints_nan(path):
    assert not re.search(r"\|\s*nan\s*\|", path.read_text())
