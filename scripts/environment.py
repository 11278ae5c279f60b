#!/usr/bin/env python3
"""The study's environment: ``lock`` writes requirements.lock, ``setup`` installs exactly it,
``check`` compares what is installed with it. The Makefile's ``lock`` and ``setup`` targets run
this; it needs the standard library alone (it runs before anything is installed).

    python3 scripts/environment.py lock  [--upgrade]     # pyproject.toml's ranges -> requirements.lock
    python3 scripts/environment.py setup .venv            # create .venv, install the lock, check it
    .venv/bin/python scripts/environment.py check        # installed set == lock? (exit 1 if not)

uv resolves and installs (``make lock`` 1 s where pip-compile took 190 s; installing the lock
19 s where pip took 117 s, on a 2-core VM). Both read this machine's pip configuration: its
index, extra indexes, find-links and, for ``lock``, its constraints, so a wheel that lies on
this disk is taken from there.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements.lock"
#: Hand-kept exceptions to the resolution, each with its reason (see the file).
LOCK_CONSTRAINTS = ROOT / "scripts" / "lock-constraints.txt"
#: The environment the lock is made for: the wheels of torch 2.14.1 that the lock pins exist for
#: this platform, and a lock is exact only for one Python (some pins need 3.11.5 or newer).
PYTHON = "3.11.7"
PLATFORM = "x86_64-manylinux_2_28"
EXTRA = "all"


def _lockfile_module():
    spec = importlib.util.spec_from_file_location("_pedlib_lockfile", ROOT / "pedlib" / "lockfile.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fail(message: str) -> None:
    print(f"environment: {message}", file=sys.stderr)
    sys.exit(1)


def pip_config() -> dict[str, list[str]]:
    """The pip configuration in force (files and PIP_* variables): option -> values."""
    listed = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True)
    options: dict[str, list[str]] = {}
    for line in listed.stdout.splitlines():
        name, _, value = line.partition("=")
        option = name.rsplit(".", 1)[-1]
        values = shlex.split(value)
        if option in ("index-url", "extra-index-url", "find-links", "constraint") and values:
            words = [w for v in values for w in v.split()]
            options[option] = list(dict.fromkeys(options.get(option, []) + words))
    return options


def index_arguments() -> list[str]:
    """uv's index options from pip's: the extra indexes (a local mirror first, as uv prefers
    them over the default index), find-links, and the default index."""
    options = pip_config()
    arguments = ["--index-strategy", "unsafe-best-match"]
    for url in options.get("index-url", []):
        arguments += ["--index-url", url]
    for url in options.get("extra-index-url", []):
        arguments += ["--extra-index-url", url]
    for link in options.get("find-links", []):
        arguments += ["--find-links", link]
    return arguments


def project_hash() -> str:
    """sha256 of what the lock is made from: pyproject's requirements and the constraints."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {k: project.get(k) for k in ("requires-python", "dependencies", "optional-dependencies")}
    wanted["constraints"] = LOCK_CONSTRAINTS.read_text()
    return hashlib.sha256(json.dumps(wanted, sort_keys=True).encode()).hexdigest()


def header() -> str:
    return (f"# requirements.lock: every distribution of pedlib[{EXTRA}] pinned with its hashes, for\n"
            f"# CPython {PYTHON} or a later {PYTHON.rsplit('.', 1)[0]} on {PLATFORM}. Made by `make lock` (scripts/environment.py) from\n"
            "# pyproject.toml's ranges; `make setup` installs exactly it. Do not edit by hand.\n"
            f"# python: {PYTHON}\n# platform: {PLATFORM}\n# made-from: {project_hash()}\n")


def _header_field(name: str) -> str | None:
    for line in LOCK.read_text().splitlines():
        if line.startswith(f"# {name}: "):
            return line.split(": ", 1)[1].strip()
        if not line.startswith("#"):
            break
    return None


def install_uv(venv: Path) -> str:
    """``venv``'s uv, created (with the venv) as the lock pins it, with its hashes, through pip."""
    python, uv = venv / "bin" / "python", venv / "bin" / "uv"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    have = subprocess.run([str(uv), "--version"], capture_output=True, text=True).stdout.split()[1:2] \
        if uv.exists() else []
    if have != [_lockfile_module().read_lock(LOCK)["uv"]]:
        bootstrap = venv / "uv-requirement.txt"
        bootstrap.write_text(_requirement_block("uv"))
        try:
            subprocess.run([str(python), "-m", "pip", "install", "-qq", "--require-hashes", "--no-deps",
                            "--disable-pip-version-check", "-r", str(bootstrap)], check=True)
        finally:
            bootstrap.unlink(missing_ok=True)
    return str(uv)


def lock(upgrade: bool) -> None:
    constraints = []
    for path in pip_config().get("constraint", []) + [str(LOCK_CONSTRAINTS)]:
        constraints += ["--constraint", path]
    command = [install_uv(ROOT / ".venv"), "pip", "compile", "pyproject.toml", "--extra", EXTRA, "--generate-hashes",
               "--python-version", PYTHON, "--python-platform", PLATFORM, "--no-header",
               "--no-emit-package", "pedlib", "--quiet", *index_arguments(), *constraints,
               "--output-file", str(LOCK)]
    if upgrade:  # otherwise uv keeps the versions the existing lock pins, where they are in range
        command.append("--upgrade")
    result = subprocess.run(command, cwd=ROOT)
    if result.returncode:
        fail("uv pip compile failed (above)")
    LOCK.write_text(header() + LOCK.read_text())
    print(f"wrote {LOCK.relative_to(ROOT)}: {len(_lockfile_module().read_lock(LOCK))} distributions")


def _check_target() -> None:
    here, machine = platform.python_version(), platform.machine()
    made_for = tuple(int(part) for part in (_header_field("python") or "0.0.0").split("."))
    minor = ".".join(map(str, made_for[:2]))
    if sys.version_info[:2] != made_for[:2] or sys.version_info[:3] < made_for or \
            not sys.platform.startswith("linux") or machine != "x86_64":
        fail(f"requirements.lock is made for CPython {minor} (>= {_header_field('python')}) on Linux x86_64; "
             f"this is Python {here} on {sys.platform} {machine}. Run `make setup PYTHON=python{minor}`, "
             "or install the ranges without the lock: python3 -m pip install -e '.[all]' (the numbers "
             "can then differ from the committed figures in the last bits)")
    if _header_field("made-from") != project_hash():
        fail("requirements.lock was made from another pyproject.toml or scripts/lock-constraints.txt; "
             "run `make lock` and commit the new lock")


def setup(venv: Path) -> None:
    _check_target()
    python, uv = venv / "bin" / "python", install_uv(venv)
    run = [uv, "pip"]
    target = ["--python", str(python), *index_arguments()]
    # bytecode compiled at install, as pip does: uv leaves it to the first import, which a
    # machine with PYTHONDONTWRITEBYTECODE=1 then repeats in every process (7 s of compile()
    # per `pedlib rank`, minutes over the tests)
    subprocess.run([*run, "sync", "--require-hashes", "--compile-bytecode", "--quiet", *target, str(LOCK)],
                   check=True, cwd=ROOT)
    subprocess.run([*run, "install", "--no-deps", "--quiet", *target, "--editable", "."], check=True, cwd=ROOT)
    subprocess.run([str(python), str(Path(__file__).resolve()), "check"], check=True)


def _requirement_block(name: str) -> str:
    """The lines of ``name``'s pin in the lock: its ``name==version \\`` line and its hashes."""
    lines, taking = [], False
    lockfile = _lockfile_module()
    for line in LOCK.read_text().splitlines():
        if line and not line.startswith((" ", "#")):
            taking = lockfile.canonical_name(line.split("==")[0]) == name
        if taking and not line.lstrip().startswith("#"):
            lines.append(line)
    if not lines:
        fail(f"requirements.lock pins no {name}")
    return "\n".join(lines).rstrip(" \\") + "\n"


def check() -> None:
    lockfile = _lockfile_module()
    differs = lockfile.differences(lockfile.read_lock(LOCK), lockfile.installed())
    if differs:
        rows = [f"  {name}: locked {v['locked'] or '-'}, installed {v['installed'] or '-'}"
                for name, v in differs.items()]
        fail(f"this environment differs from requirements.lock in {len(differs)} distribution(s):\n"
             + "\n".join(rows) + "\nrun `make setup` to install exactly the lock")
    print(f"environment: exactly requirements.lock ({len(lockfile.read_lock(LOCK))} distributions, "
          f"sha256 {lockfile.lock_sha256(LOCK)[:12]})")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="scripts/environment.py", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    made = commands.add_parser("lock", help="resolve pyproject.toml's ranges into requirements.lock")
    made.add_argument("--upgrade", action="store_true", help="newest versions in range (default: keep pins)")
    install = commands.add_parser("setup", help="create VENV and install exactly the lock")
    install.add_argument("venv", type=Path)
    commands.add_parser("check", help="compare the running Python's distributions with the lock")
    args = parser.parse_args(argv)
    os.chdir(ROOT)
    if args.command == "lock":
        lock(args.upgrade)
    elif args.command == "setup":
        setup(args.venv.resolve() if args.venv.is_absolute() else ROOT / args.venv)
    else:
        check()


if __name__ == "__main__":
    main()
