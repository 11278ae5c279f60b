"""One look for every figure: sizes for a paper's column and page, fonts legible at those
sizes, one colour-blind-safe colour and one readable label per method, and byte-stable files.

Every plot function of :mod:`pedlib.plots` draws inside :func:`style` (a
``matplotlib.rc_context``: nothing global changes) and is written by :func:`save`.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

import matplotlib

matplotlib.use("Agg")  # headless: papermill and CI have no display
import matplotlib.pyplot as plt  # noqa: E402

from . import records  # noqa: E402

__all__ = ["COLUMN", "PAGE", "FORMATS", "RC", "style", "method_color", "method_label", "class_styles",
           "PLAIN", "PED", "save"]

COLUMN = 3.3  # inches: one column of a two-column paper
PAGE = 7.0  # inches: the full text width
FORMATS = ("pdf", "png", "svg")

RC = {
    "font.size": 8, "axes.titlesize": 8, "axes.labelsize": 8, "xtick.labelsize": 7, "ytick.labelsize": 7,
    "legend.fontsize": 7, "legend.title_fontsize": 7, "figure.titlesize": 9,
    "axes.spines.top": False, "axes.spines.right": False, "axes.linewidth": 0.6,
    "xtick.major.width": 0.6, "ytick.major.width": 0.6, "xtick.major.size": 2.5, "ytick.major.size": 2.5,
    "lines.linewidth": 1.0, "legend.frameon": False,
    "pdf.fonttype": 42, "ps.fonttype": 42,  # TrueType embedded: the text stays text, and editable
    "svg.fonttype": "none", "svg.hashsalt": "pedlib",  # no random ids in SVG
    "savefig.bbox": "tight", "savefig.pad_inches": 0.02,
}

# Paul Tol's "muted" scheme (colour-blind safe, https://personal.sron.nl/~pault/) and two of
# his others for the metrics, greys for the baselines; a method keeps its colour in every
# figure. The order of _LABELS is the order colours are given out in.
_METRIC_COLORS = ("#332288", "#88CCEE", "#44AA99", "#117733", "#999933", "#882255", "#AA4499", "#CC6677",
                  "#DDCC77", "#6699CC", "#661100")
_BASELINE_COLORS = ("#555555", "#999999", "#BBBBBB")
PLAIN, PED = "#BBBBBB", "#444444"  # without and with PED where a figure compares the two

_LABELS = {"logme": "LogME", "logme_reference": "LogME (ref. code)", "sfda": "SFDA", "gbc": "GBC",
           "nleep": "N-LEEP", "parc": "PARC", "hscore": "H-score", "hscore_shrinkage": "H-score (shrinkage)",
           "transrate": "TransRate", "leep": "LEEP", "nce": "NCE", "knn": "kNN", "dim": "Dim."}


_DATASET_LABELS = {"flowers12": "Flowers-12", "cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "mnist5k": "MNIST-5k",
                   "digits": "Digits", "lfw": "LFW", "mean": "Mean", "aircraft": "Aircraft", "caltech101": "Caltech-101",
                   "cars": "Cars", "dtd": "DTD", "flowers": "Flowers", "food": "Food", "pets": "Pets",
                   "sun397": "SUN397", "voc2007": "VOC2007"}


def dataset_label(name: str) -> str:
    """A readable label for a dataset id: ``flowers12`` -> ``Flowers-12``, ``mean`` -> ``Mean``."""
    return _DATASET_LABELS.get(str(name), str(name))


@contextmanager
def style() -> Iterator[None]:
    """The study's rc settings for the figures drawn inside the block."""
    with plt.rc_context(RC):
        yield


def method_label(name: str) -> str:
    """A readable label for a metric or method: ``logme+ped`` -> ``LogME + PED``."""
    metric, _, variant = name.partition("+")
    label = _LABELS.get(metric, metric)
    return label if not variant else f"{label} + {variant.replace('ped', 'PED', 1)}"


def method_color(metric: str) -> str:
    """The colour of ``metric``, the same in every figure: the registry's metrics take the
    muted scheme in registry order, baselines the greys."""
    from . import metrics

    names = metrics.available()
    baselines = [n for n in names if metrics.info(n).kind == "baseline"]
    if metric in baselines:
        return _BASELINE_COLORS[baselines.index(metric) % len(_BASELINE_COLORS)]
    others = [n for n in _LABELS if n in names and n not in baselines]
    others += [n for n in names if n not in others and n not in baselines]
    position = others.index(metric) if metric in others else len(others)
    return _METRIC_COLORS[position % len(_METRIC_COLORS)]


#: Okabe and Ito's colour-blind-safe palette (without black), for classes.
CLASS_COLORS = ("#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7")
CLASS_MARKERS = ("o", "s", "^", "D", "v", "P")


def class_styles(n: int) -> list[tuple[str, str]]:
    """(colour, marker) for ``n`` classes: colour and marker both change from one class to the
    next (7 colour-blind-safe colours, 6 markers), so up to 42 classes each have their own pair."""
    return [(CLASS_COLORS[i % len(CLASS_COLORS)], CLASS_MARKERS[i % len(CLASS_MARKERS)]) for i in range(n)]


def save(fig, stem: Path, formats: Sequence[str] = ("pdf", "png"), dpi: int = 300) -> list[Path]:
    """Write ``fig`` as ``stem.<format>`` for each format, atomically, and close it. No creation
    date or random id goes into a file, so the same figure gives the same bytes."""
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ValueError(f"figure format {unknown[0]!r} is not one of {', '.join(FORMATS)}")
    metadata = {"pdf": {"CreationDate": None}, "svg": {"Date": None}, "png": {}}
    paths = []
    with style():
        for fmt in formats:
            path = Path(stem).with_suffix(f".{fmt}")
            records.atomic_write(path, lambda tmp, fmt=fmt: fig.savefig(tmp, format=fmt, dpi=dpi,
                                                                        metadata=metadata[fmt]))
            paths.append(path)
    plt.close(fig)
    return paths
