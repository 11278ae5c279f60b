"""Third-party assets (pretrained models, datasets) resolved by name and verified by checksum.

The project never commits assets. It resolves them through its own copy of the manifest
(``assets_manifest.tsv``: path, bytes, sha256, source URL pinned to a commit, license), in
this order:

1. a local mirror folder (``mirror=``, the ``PEDLIB_ASSETS`` environment variable, or else a
   ``shared/assets`` folder beside the checkout pedlib runs from, as on this project's
   development machines and CI), checked against the sha256;
2. the user cache (``PEDLIB_CACHE`` or the OS cache folder), filled by downloading the
   ``source`` URL with pooch and checking the sha256 (a folder asset is fetched as the
   repository archive at that commit and checked against its tree hash);
3. otherwise an :class:`AssetError` that names the asset and both ways to provide it.

A folder's checksum is ``tree:`` + sha256 over its files sorted by relative path, feeding for
each file its relative path (UTF-8, ``/``-separated) followed by the raw 32-byte sha256 of
its content.
"""

from __future__ import annotations

from ._extras import require as _require

_require("torch", "pedlib.assets", ("pooch",))

import csv
import difflib
import hashlib
import io
import os
import re
import shutil
import tarfile
import textwrap
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Callable

import pooch

__all__ = ["Asset", "AssetError", "manifest", "resolve", "file_sha256", "tree_sha256", "default_mirror",
           "default_cache"]

_GITHUB_TREE = re.compile(r"https://github\.com/(?P<repo>[^/]+/[^/]+)/tree/(?P<commit>[0-9a-f]{40})/(?P<sub>.+)")


class AssetError(FileNotFoundError):
    """An asset is missing, corrupt or cannot be fetched; the message says how to provide it."""


@dataclass(frozen=True)
class Asset:
    """One manifest row. ``path`` is relative to the mirror root; folders end in ``/``."""

    path: str
    bytes: int
    sha256: str
    source: str
    license: str
    description: str

    @property
    def is_tree(self) -> bool:
        return self.sha256.startswith("tree:")

    @property
    def name(self) -> str:
        return self.path.rstrip("/")

    @property
    def url(self) -> str | None:
        """The download URL, or None where the source is not a plain URL (e.g. inside a wheel)."""
        first = self.source.split()[0] if self.source else ""
        return first if first.startswith(("https://", "http://")) else None


@lru_cache(maxsize=None)
def manifest() -> dict[str, Asset]:
    """The project's asset manifest, keyed by path without a trailing slash."""
    text = resources.files("pedlib").joinpath("assets_manifest.tsv").read_text(encoding="utf-8")
    assets: list[Asset] = []
    base: Asset | None = None  # the last row described in full
    for r in csv.DictReader(io.StringIO(text), delimiter="\t"):
        description = r["description"]
        shorthand = description.startswith("as above") and base is not None
        if shorthand:  # the manifest's "as above, ResNet-56", spelled out
            description = f"{description[len('as above'):].lstrip(', ')}; otherwise as {base.path}: {base.description}"
        assets.append(Asset(r["path"], int(r["bytes"]), r["sha256"], r["source"], r["license"], description))
        if not shorthand:
            base = assets[-1]
    return {a.name: a for a in assets}


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(2**20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def tree_sha256(root: Path) -> str:
    """``tree:`` + the folder hash described in the module docstring."""
    digest = hashlib.sha256()
    files = sorted(p.relative_to(root).as_posix() for p in Path(root).rglob("*") if p.is_file())
    for relative in files:
        digest.update(relative.encode("utf-8"))
        digest.update(bytes.fromhex(file_sha256(Path(root) / relative)))
    return "tree:" + digest.hexdigest()


def _checksum(asset: Asset, path: Path) -> str:
    return tree_sha256(path) if asset.is_tree else file_sha256(path)


def _verified(asset: Asset, path: Path, where: str) -> Path:
    actual = _checksum(asset, path)
    if actual != asset.sha256:
        raise AssetError(f"checksum mismatch for asset {asset.name!r} in the {where} ({path}): "
                         f"expected {asset.sha256}, got {actual}. The file is corrupt or a different "
                         "version; replace it with the one from " + asset.source)
    return path


def default_mirror() -> Path | None:
    """The local mirror: ``$PEDLIB_ASSETS`` when set and not empty, else ``../shared/assets``
    beside the checkout when it holds a MANIFEST.tsv, else None."""
    chosen = os.environ.get("PEDLIB_ASSETS")
    if chosen:
        return Path(chosen)
    beside = Path(__file__).resolve().parent.parent.parent / "shared" / "assets"
    return beside if (beside / "MANIFEST.tsv").is_file() else None


def _mirror_note(mirror, path: str) -> str:
    """Which local mirror was searched, for the error message."""
    chosen = os.environ.get("PEDLIB_ASSETS")
    if mirror is not None:
        named = f"PEDLIB_ASSETS={mirror}" if chosen and Path(chosen) == Path(mirror) else str(mirror)
        return f" The local mirror {named} has no {path}."
    state = "is set but empty" if chosen is not None else "is not set"
    return f" No local mirror was searched: PEDLIB_ASSETS {state} and no shared/assets folder is beside the checkout."


def default_cache() -> Path:
    return Path(os.environ.get("PEDLIB_CACHE") or pooch.os_cache("pedlib"))


def _download(asset: Asset, cache: Path, downloader: Callable | None) -> Path:
    """Fetch ``asset`` into ``cache``. Quiet until data flows (pooch's "Downloading ..." line is
    silenced; its progress bar shows a transfer); on failure, the folders it made are removed."""
    created = [folder for folder in (cache, cache / Path(asset.name).parent, cache / "_archives")
               if not folder.exists()]
    logger = pooch.get_logger()
    level = logger.level
    logger.setLevel("WARNING")
    try:
        return _fetch(asset, cache, downloader)
    except BaseException:
        for folder in sorted(created, key=lambda f: len(f.parts), reverse=True):
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        raise
    finally:
        logger.setLevel(level)


def _fetch(asset: Asset, cache: Path, downloader: Callable | None) -> Path:
    url = asset.url
    target = cache / asset.name
    tree = _GITHUB_TREE.match(url)
    if not asset.is_tree:
        fetched = pooch.retrieve(url, known_hash=f"sha256:{asset.sha256}", fname=target.name,
                                 path=target.parent, downloader=downloader, progressbar=True)
        return Path(fetched)
    if tree is None:
        raise AssetError(f"asset {asset.name!r} is a folder but its source is not a GitHub tree URL: {url}")
    archive_url = f"https://github.com/{tree['repo']}/archive/{tree['commit']}.tar.gz"
    archive = Path(pooch.retrieve(archive_url, known_hash=None, fname=f"{tree['commit']}.tar.gz",
                                  path=cache / "_archives", downloader=downloader, progressbar=True))
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    with tarfile.open(archive) as bundle:
        top = bundle.getmembers()[0].name.split("/")[0]
        prefix = f"{top}/{tree['sub'].strip('/')}/"
        members = [m for m in bundle.getmembers() if m.isfile() and m.name.startswith(prefix)]
        for member in members:
            member.name = member.name[len(prefix):]
        bundle.extractall(staging, members=members, filter="data")
    _verified(asset, staging, "download")
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)  # atomic: a folder in the cache is complete or absent
    return target


def resolve(name: str, *, mirror: str | os.PathLike | None = None, cache: str | os.PathLike | None = None,
            download: bool = True, downloader: Callable | None = None) -> Path:
    """Return the local path of a verified asset.

    Parameters
    ----------
    name : str
        A manifest path, e.g. ``"models/cifar10_resnet20.th"`` or ``"data/flowers12"``.
    mirror : path, optional
        A local mirror folder laid out as the manifest; default :func:`default_mirror`.
    cache : path, optional
        Download cache; default ``$PEDLIB_CACHE`` or the OS user cache.
    download : bool, default True
        Whether to fetch a missing asset from its source URL.
    downloader : callable, optional
        A pooch downloader (tests pass one that copies local files).

    Raises
    ------
    AssetError
        Unknown name (with close matches), checksum mismatch, or missing with no way to fetch it.
    """
    assets = manifest()
    key = name.rstrip("/")
    if key not in assets:
        close = difflib.get_close_matches(key, assets, n=3, cutoff=0.4)
        raise AssetError(f"unknown asset {name!r}" + (f"; did you mean {close}?" if close else "")
                         + f" Known assets: {', '.join(sorted(assets))}")
    asset = assets[key]
    mirror = mirror if mirror is not None else default_mirror()
    if mirror is not None and (Path(mirror) / asset.name).exists():
        return _verified(asset, Path(mirror) / asset.name, "local mirror")
    cache_dir = Path(cache) if cache is not None else default_cache()
    cached = cache_dir / asset.name
    if cached.exists():
        return _verified(asset, cached, "cache")
    problem = ""
    if download and asset.url is None:
        problem = " Its source is not a downloadable URL, so pedlib cannot fetch it."
    elif download:
        try:
            return _download(asset, cache_dir, downloader)
        except AssetError:
            raise
        except Exception as error:  # network or HTTP failure: fall through to the clear message
            problem = f" Download failed: {type(error).__name__}: {error}."
    raise AssetError(
        f"asset {asset.name!r} ({textwrap.shorten(asset.description, 110, placeholder=' ...')}) is not available."
        f"{_mirror_note(mirror, asset.path)}{problem} Provide it either "
        f"(1) in a local mirror folder laid out as the manifest: set PEDLIB_ASSETS=/path/to/assets "
        f"(make: ASSETS=/path/to/assets) so that /path/to/assets/{asset.path} exists, or "
        f"(2) by placing or downloading it from {asset.source} into {cache_dir} "
        f"(needs network access; sha256 {asset.sha256}).")
