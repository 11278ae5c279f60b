"""`pedlib verify`: regenerated figures and tables against the committed ones."""

import subprocess

import pytest

from pedlib.verify import compare, verify

TABLE = "method,flowers12,mean\nlogme,0.4550000000000001,0.3\nsfda,0.287,0.2\n"
MARKDOWN = "| method | flowers12 |\n|:--|--:|\n| logme | 0.455 |\n"


def _committed(tmp_path):
    folder = tmp_path / "figures" / "smoke"
    folder.mkdir(parents=True)
    (folder / "wtau.csv").write_text(TABLE)
    (folder / "wtau.md").write_text(MARKDOWN)
    (folder / "wtau.png").write_bytes(b"\x89PNG fake")
    (folder / "index.md.record.json").write_text('{"created": "then"}')
    git = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(git[:3] + ["init", "-q"], check=True)
    subprocess.run(git + ["add", "-A"], check=True)
    subprocess.run(git + ["commit", "-qm", "figures"], check=True)
    return folder


def test_an_unchanged_folder_is_identical(tmp_path):
    verdict = verify(_committed(tmp_path))
    assert verdict.ok and verdict.summary == "identical" and len(verdict.of("identical")) == 4
    assert verdict.report().splitlines()[-1] == "verdict: identical"


def test_a_perturbed_number_is_named_with_its_column_row_and_difference(tmp_path):
    folder = _committed(tmp_path)
    (folder / "wtau.csv").write_text(TABLE.replace("0.287", "0.289"))
    verdict = verify(folder)
    assert not verdict.ok and verdict.summary == "different"
    (finding,) = verdict.of("different")
    assert finding.file == "wtau.csv" and "column 'flowers12', row 2: 0.287 -> 0.289" in finding.detail
    assert finding.largest == pytest.approx(0.002)
    assert "    wtau.csv: column 'flowers12', row 2" in verdict.report()


def test_last_bits_are_equal_within_the_tolerance_and_a_record_is_not_judged(tmp_path):
    folder = _committed(tmp_path)
    (folder / "wtau.csv").write_text(TABLE.replace("0.4550000000000001", "0.45500000000000007"))
    (folder / "index.md.record.json").write_text('{"created": "now"}')
    verdict = verify(folder)
    assert verdict.ok and verdict.summary == "equal within the tolerance"
    assert [f.file for f in verdict.of("within")] == ["wtau.csv"]
    assert [f.file for f in verdict.of("record")] == ["index.md.record.json"]


def test_figure_bytes_text_and_missing_or_new_files_are_differences(tmp_path):
    folder = _committed(tmp_path)
    (folder / "wtau.png").write_bytes(b"\x89PNG other")
    (folder / "wtau.md").write_text(MARKDOWN.replace("logme", "sfda"))
    (folder / "extra.csv").write_text("a\n1\n")
    verdict = verify(folder)
    found = {f.file: f for f in verdict.findings}
    assert found["wtau.png"].status == "different" and "bytes differ" in found["wtau.png"].detail
    assert found["wtau.md"].status == "different" and "line 3: text differs" in found["wtau.md"].detail
    assert found["extra.csv"].status == "new"
    (folder / "wtau.csv").unlink()
    assert verify(folder).of("missing")[0].file == "wtau.csv"


def test_markdown_numbers_are_compared_as_numbers():
    old = b"| logme | 0.455 | -0.117 |\n"
    assert compare("t.md", old, b"| logme | 0.456 | -0.117 |\n").detail == "line 1: 0.455 -> 0.456 (difference 0.001)"
    assert compare("t.tex", b"$-$0.12 & 1e-3\n", b"$-$0.12 & 0.001\n").status == "within"


def test_a_folder_outside_git_is_one_clear_error(tmp_path):
    (tmp_path / "f").mkdir()
    with pytest.raises(RuntimeError, match="not in a git checkout"):
        verify(tmp_path / "f")
    with pytest.raises(FileNotFoundError, match="run the study first"):
        verify(tmp_path / "missing")
