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


def test_docs_rank_lists_every_option_of_the_parser():
    """docs/rank.md's table names every option `pedlib rank` accepts."""
    from pedlib.cli import _parser

    rank = next(a for a in _parser()._subparsers._group_actions[0].choices.items() if a[0] == "rank")[1]
    options = {s for action in rank._actions for s in action.option_strings if s not in ("-h", "--help")}
    page = (ROOT / "docs" / "rank.md").read_text()
    table = [line for line in page.splitlines() if line.startswith("| `")]
    missing = sorted(o for o in options if not any(f"`{o}" in line for line in table))
    assert not missing, f"docs/rank.md does not describe {missing}"



def test_the_readmes_linear_probe_order_is_the_committed_tables():
    """The worked example's closing sentence quotes each model's Flowers-12 linear-probe
    accuracy, in the example's order: the committed table's numbers."""
    import pandas as pd

    block = next(b for b in _blocks("") if b.lstrip().startswith("$ .venv/bin/pedlib rank"))
    ranked = [line.split()[1] for line in block.splitlines() if re.match(r"^\s*\d+\s+\S+\s+-?\d+\.\d{4}\s", line)]
    quoted = re.search(r"linear probe on Flowers-12 \(([\d., ]+)\)", README).group(1)
    table = pd.read_csv(ROOT / "figures" / "pocket" / "groundtruth_linear_probe.csv").set_index("model")
    assert [f"{table.flowers12[m]:.3f}" for m in ranked] == [v.strip() for v in quoted.split(",")]


_README_NAMES = {"LogME": "logme", "LogME (ref. code)": "logme_reference", "SFDA": "sfda", "GBC": "gbc",
                 "N-LEEP": "nleep", "PARC": "parc", "H-score": "hscore", "H-score (shrinkage)": "hscore_shrinkage",
                 "TransRate": "transrate", "*kNN (baseline)*": "knn", "*Dim. (baseline)*": "dim"}


def _readme_table(first_header: str, text: str = README) -> list[list[str]]:
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_header} |"))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def _number(text: str) -> float:
    return float(text.replace("−", "-").replace("**", "").split()[0])


def test_the_readmes_result_tables_are_the_committed_figures():
    """Every number of the README's two result tables, against figures/pocket/: the weighted
    taus and PED's change (point estimates), and the change under each of PED's references."""
    import pandas as pd

    figures = ROOT / "figures" / "pocket"
    wtau = pd.read_csv(figures / "wtau_finetune_all.csv").set_index("method")["mean"]
    change = pd.read_csv(figures / "ped_effect_finetune_all.csv").set_index("metric")["mean"]
    rows = _readme_table("method | without PED")
    assert [row[0] for row in rows] == list(_README_NAMES)
    for name, plain, with_ped, delta in rows:
        method = _README_NAMES[name]
        assert (_number(plain), _number(with_ped)) == (round(wtau[method], 3), round(wtau[f"{method}+ped"], 3)), name
        assert _number(delta) == round(change.get(method, 0.0), 3), name
    ablation = pd.read_csv(figures / "reference_ablation_finetune.csv").set_index("method")
    study = (ROOT / "docs" / "study.md").read_text()
    rows = _readme_table("method | own source data (default)")
    assert len(rows) == 10 and rows == _readme_table("method | own source data (default)", study)
    for name, default, others, itself, cifar in rows:
        method = _README_NAMES[name]
        plain = ablation.loc[method]
        for text, variant, column in ((default, "+ped", "mean"), (others, "+ped[ref=others]", "mean"),
                                      (itself, "+ped[ref=none]", "mean"), (cifar, "+ped", "cifar10")):
            assert _number(text) == round(ablation.loc[method + variant, column] - plain[column], 3), (name, variant)


def test_the_papers_numbers_in_the_readme_are_the_published_means():
    import pandas as pd

    published = pd.read_csv(ROOT / "params" / "published" / "wtau_ped_paper_ssl.csv").set_index("method")
    means = published.drop(columns="reference").mean(axis=1)
    assert f"LogME {means['logme']:.3f} without PED, {means['logme+ped']:.3f} with it in the paper" in \
        " ".join(README.split())


def test_the_readmes_paired_comparisons_are_the_committed_tables():
    import pandas as pd

    text = " ".join(README.split())
    for truth in ("finetune", "linear_probe"):
        table = pd.read_csv(ROOT / "figures" / "pocket" / f"method_comparison_{truth}.csv").set_index("comparison")
        for label, row in table.iterrows():
            first, second = (part.strip() for part in label.split("−"))
            quoted = f"{row.difference:.3f} [{row.ci_low:.3f}, {row.ci_high:.3f}]".replace("-", "−")
            if first in ("N-LEEP", "kNN") and second == "LogME":
                where = {"finetune": "against fine-tuning", "linear_probe": "against the linear probe"}[truth]
                mentioned = quoted in text
                assert mentioned or (truth, first) == ("linear_probe", "kNN"), (truth, label, quoted)
                if mentioned:
                    excludes = row.ci_low > 0 or row.ci_high < 0
                    assert excludes == (truth == "linear_probe" and first == "N-LEEP"), (where, label)


def test_every_file_the_readme_and_docs_name_exists():
    """A path in backticks (`pedlib/...`, `figures/pocket/...`, `benchmarks/...`) names a file or
    folder of the checkout; placeholders (<study>, *, {a,b}) and results/ (made by a run) aside."""
    import re

    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    roots = ("pedlib", "benchmarks", "params", "docs", "notebooks", "tests", "scripts", "figures", ".ci")
    missing = []
    for page in pages:
        for name in re.findall(r"`([^`\s]+)`", page.read_text()):
            path = name.split("::")[0].rstrip(".,:;")
            if path.split("/")[0] not in roots or re.search(r"[<>*{}]|STUDY|NN_", path):
                continue
            if not (ROOT / path).exists():
                missing.append(f"{page.name}: {name}")
    assert missing == []


def test_the_paper_beside_the_study_is_the_published_and_committed_tables():
    """docs/paper-vs-study.md's table: the paper's mean over its datasets and the pocket study's
    means (all models, the MobileNet pool), each without -> with PED, as the files hold them."""
    import re

    import pandas as pd

    paper = pd.read_csv(ROOT / "params" / "published" / "wtau_ped_paper_ssl.csv").set_index("method")
    paper = paper.drop(columns="reference").mean(axis=1)
    pools = {pool: pd.read_csv(ROOT / "figures" / "pocket" / f"wtau_finetune_{pool}.csv").set_index("method")["mean"]
             for pool in ("all", "mobilenet")}
    names = {"LogME": "logme", "SFDA": "sfda", "GBC": "gbc", "N-LEEP": "nleep", "PARC": "parc"}
    text = (ROOT / "docs" / "paper-vs-study.md").read_text()
    rows = re.findall(r"^\| (LogME|SFDA|GBC|N-LEEP|PARC) \| (.+) \| (.+) \| (.+) \|$", text, re.M)
    assert [r[0] for r in rows] == list(names)

    def pair(values, metric):
        with_ped = f"{values[metric + '+ped']:.3f}" if metric + "+ped" in values else "—"
        return f"{values[metric]:.3f} → {with_ped}"

    for label, *cells in rows:
        metric = names[label]
        assert cells == [pair(paper, metric), pair(pools["all"], metric), pair(pools["mobilenet"], metric)], label
    text = " ".join(text.split())  # the bullets' lines wrap anywhere
    assert "0.373 → 0.314" in text and "0.137 → 0.210" in text  # the bullets quote the table
    ablation = pd.read_csv(ROOT / "figures" / "pocket" / "reference_ablation_finetune.csv").set_index("method")["mean"]
    assert f"from {ablation['logme'] - ablation['logme+ped']:.3f} to" in text
    assert f"to {ablation['logme'] - ablation['logme+ped[ref=others]']:.3f} (the README" in text
    probe = pd.read_csv(ROOT / "figures" / "pocket" / "wtau_linear_probe_all.csv").set_index("method")["mean"]
    assert f"({probe['logme']:.3f} → {probe['logme+ped']:.3f};" in text


def test_the_study_pages_weighted_tau_table_is_the_committed_figures():
    """docs/study.md's table against fine-tuning: per target, the mean, the mean with PED
    (figures/pocket/wtau_finetune_all.csv) and both means' intervals (its LaTeX twin)."""
    import re

    import pandas as pd

    figures = ROOT / "figures" / "pocket"
    wtau = pd.read_csv(figures / "wtau_finetune_all.csv").set_index("method")
    tex = (figures / "wtau_finetune_all.tex").read_text().splitlines()
    intervals = {}
    for i, line in enumerate(tex):
        if line.startswith(" & {\\scriptsize"):
            label = tex[i - 1].split(" & ")[0]
            intervals[label] = re.findall(r"\[([^\]]+)\]", line)[-1].replace("$-$", "-")
    study = (ROOT / "docs" / "study.md").read_text()
    rows = re.findall(r"^\| (\*?\w+\*?)(?: \(baseline\))? \| (.+) \|$", study.split("| method | flowers12")[1]
                      .split("\n\n")[0], re.M)
    assert len(rows) == 11
    from pedlib.plotstyle import method_label

    for name, rest in rows:
        method = name.strip("*")
        cells = [c.strip().replace("**", "") for c in rest.split("|")]
        values = [float(c) for c in cells[:6]] + [float(cells[7])]
        expected = [round(wtau.loc[method, c], 3) for c in ("flowers12", "cifar10", "mnist5k", "digits", "lfw",
                                                           "mean")] + [round(wtau.loc[method + "+ped", "mean"], 3)]
        assert values == expected, method
        assert cells[6] == f"[{intervals[method_label(method)]}]", method
        assert cells[8] == f"[{intervals[method_label(method + '+ped')]}]", method
