"""The README's commands work as written: its examples are extracted from README.md and run
(or, where they need data, a GPU or a cluster this machine lacks, their commands are shown to
exist and to accept the options the README uses)."""

import os
import re
import signal
import subprocess
import sys
import time

import pytest

from conftest import ROOT, SHARED_ASSETS, needs_assets

README = (ROOT / "README.md").read_text()


def _blocks(language: str, text: str = README) -> list[str]:
    """The fenced blocks of ``text`` tagged ``language`` ("" for untagged), fences paired in order."""
    blocks, current, tag = [], None, None
    for line in text.splitlines(keepends=True):
        if line.startswith("```"):
            if current is None:
                current, tag = [], line[3:].strip()
            else:
                if tag == language:
                    blocks.append("".join(current))
                current = None
        elif current is not None:
            current.append(line)
    return blocks


def test_python_api_examples_run_verbatim(tmp_path):
    """Each page's Python blocks, in order, as one script (README.md, then every page of docs/)."""
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    ran = 0
    for page in pages:
        code = "\n".join(_blocks("python", page.read_text()))
        if not code:
            continue
        (tmp_path / f"{page.stem}.py").write_text(code)
        done = subprocess.run([sys.executable, str(tmp_path / f"{page.stem}.py")], cwd=tmp_path,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, (page.name, done.stderr[-2000:])
        ran += 1
    assert ran >= 2


@needs_assets
def test_the_rank_example_runs_verbatim_from_the_checkout_layout(tmp_path):
    """The worked example's command, character for character, in a folder laid out as a fresh
    clone is (the checkout's .venv, ../shared beside it); it prints the table the README shows."""
    block = next(b for b in _blocks("") if b.lstrip().startswith("$ .venv/bin/pedlib rank"))
    lines = block.strip().splitlines()
    command = lines[0].removeprefix("$ ")
    for line in lines[1:]:
        if not command.endswith("\\"):
            break
        command = command[:-1] + " " + line.strip()
    work = tmp_path / "clone"
    work.mkdir()
    (work / ".venv").symlink_to(ROOT / ".venv")
    (tmp_path / "shared").symlink_to(SHARED_ASSETS.parent)
    env = {k: v for k, v in os.environ.items() if k != "PEDLIB_ASSETS"}  # as in a fresh shell
    done = subprocess.run(command, shell=True, cwd=work, capture_output=True, text=True, env=env, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    expected = [line.split()[1] for line in lines if re.match(r"\s*\d+\s+\S+\s+-?\d", line)]
    printed = [line.split()[1] for line in done.stdout.splitlines() if re.match(r"\s*\d+\s+\S+\s+-?\d", line)]
    assert printed == expected  # the same ranking as the README shows
    assert (work / "ranking" / "ranking.csv").is_file()


def test_every_make_target_the_readme_names_exists():
    code = " ".join(re.findall(r"`([^`\n]+)`", README) + _blocks("bash"))  # commands, not prose
    targets = set(re.findall(r"(?:^|\s|&& )make (?:-j\d+ )?([a-z]+)", code))
    assert {"setup", "reproduce", "test", "report", "lab", "finetune"} <= targets
    makefile = (ROOT / "Makefile").read_text()
    listed = subprocess.run(["make", "help"], cwd=ROOT, capture_output=True, text=True, timeout=60).stdout
    for target in sorted(targets):
        assert re.search(rf"^{target}:", makefile, re.M), target
        assert re.search(rf"^{target}\s", listed, re.M), f"`make help` does not list {target}"


def test_cli_accepts_every_option_the_readme_uses():
    for command, options in [("rank", ["--device", "--workers", "--max-per-class", "--out", "--reference"]),
                             ("finetune", ["--executor", "--partition", "--time", "--parallel", "--collect",
                                           "--list", "--wait"]),
                             ("notebooks", []), ("report", ["--out"])]:
        done = subprocess.run([sys.executable, "-m", "pedlib", command, "--help"], capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 0 and all(option in done.stdout for option in options), command


@pytest.mark.skipif(not (ROOT / ".venv" / "bin" / "jupyter").exists(), reason="make setup has not run")
def test_make_lab_starts_headless_and_prints_its_url_even_as_root():
    process = subprocess.Popen(["make", "lab"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, start_new_session=True,
                               env=dict(os.environ, JUPYTER_RUNTIME_DIR=str(ROOT / ".pytest_cache" / "jupyter")))
    url, seen = None, []
    deadline = time.time() + 120
    try:
        while time.time() < deadline and url is None:
            line = process.stdout.readline()
            if not line and process.poll() is not None:
                break
            seen.append(line)
            match = re.search(r"http://127\.0\.0\.1:\d+/lab\S*", line)
            url = match.group(0) if match else None
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
    assert url, "".join(seen[-20:])
    assert "Running as root is not recommended" not in "".join(seen)


def test_every_relative_link_in_the_readme_and_docs_resolves():
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    broken = []
    for page in pages:
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue
            path, _, anchor = target.partition("#")
            if not (page.parent / path).exists():
                broken.append(f"{page.relative_to(ROOT)}: {target}")
            elif anchor and path.endswith(".md") and anchor not in _anchors(page.parent / path):
                broken.append(f"{page.relative_to(ROOT)}: {target} (no such heading)")
    assert not broken, broken


def _anchors(page) -> set[str]:
    """The anchors GitHub gives a Markdown page's headings (lower case, punctuation dropped,
    spaces as hyphens)."""
    headings = re.findall(r"^#+ (.+)$", page.read_text(), re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def _doc_commands() -> list[tuple[str, str]]:
    """(page, command) for every command in a ``bash`` block of the README and docs/."""
    commands = []
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = page.read_text()
        for block in re.findall(r"^```bash\n(.*?)^```", text, re.M | re.S):
            for line in block.replace("\\\n", " ").splitlines():
                line = line.split(" #", 1)[0].strip()
                commands += [(page.name, part.strip()) for part in line.split("&&") if part.strip()]
    return commands


def test_every_shell_command_of_the_docs_is_written_one_way_and_runs(tmp_path):
    """Every command is written as it runs from the checkout (``make ...`` or ``.venv/bin/...``).
    Those that are quick and need nothing this machine lacks run verbatim; ``make`` targets run
    as a dry run (``make -n``); a command that needs a cluster or hours has its options parsed
    by the real argument parser."""
    from pedlib.cli import _parser

    commands = _doc_commands()
    assert len(commands) >= 8
    for page, command in commands:
        words = command.split()
        if words[0] == "export":
            continue
        assert words[0] in ("make", ".venv/bin/pedlib", ".venv/bin/python"), (page, command)
        if words[0] == "make":
            if "finetune" in words:  # its recipe runs pedlib to write the job Makefile first
                assert re.search(r"^finetune:", (ROOT / "Makefile").read_text(), re.M)
                continue
            done = subprocess.run(["make", "-n", *words[1:]], cwd=ROOT, capture_output=True, text=True,
                                  timeout=120)
            assert done.returncode == 0, (page, command, done.stderr[-1000:])
        elif words[0] == ".venv/bin/pedlib" and "--list" in words:
            done = subprocess.run(command, shell=True, cwd=ROOT, capture_output=True, text=True, timeout=600,
                                  env={**os.environ, "PEDLIB_DATA": str(tmp_path / "no-data")})
            assert done.returncode == 0 and done.stdout.strip(), (page, command, done.stderr[-1000:])
        elif words[0] == ".venv/bin/pedlib":
            _parser().parse_args(words[1:])  # exits with status 2 on an unknown option
        else:
            assert (ROOT / words[1]).is_file(), (page, command)
