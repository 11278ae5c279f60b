import numpy as np
import pytest


def make_blobs(n_per_class=40, n_classes=4, n_features=12, separation=1.5, seed=0):
    """Gaussian classes with shifted means: a small, overlapping, labelled feature set."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=separation, size=(n_classes, n_features))
    labels = np.repeat(np.arange(n_classes), n_per_class)
    features = centers[labels] + rng.normal(size=(len(labels), n_features))
    return features, labels


@pytest.fixture
def blobs():
    return make_blobs()


@pytest.fixture
def reference():
    rng = np.random.default_rng(1)
    return rng.normal(loc=0.3, scale=2.0, size=(200, 12))


import os  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SHARED_ASSETS = ROOT.parent / "shared" / "assets"
HAVE_ASSETS = (SHARED_ASSETS / "MANIFEST.tsv").exists()
if HAVE_ASSETS:  # as `make test` does; lets plain `pytest` find the local mirror too
    os.environ.setdefault("PEDLIB_ASSETS", str(SHARED_ASSETS))
if os.environ.get("PEDLIB_ASSETS"):  # notebooks run in temporary folders: make it absolute
    os.environ["PEDLIB_ASSETS"] = str(Path(os.environ["PEDLIB_ASSETS"]).resolve())

needs_assets = pytest.mark.skipif(not HAVE_ASSETS, reason="../shared/assets not present")

PIPELINE = ["01_groundtruth", "02_extract", "03_score", "04_evaluate", "05_figures"]


def run_notebooks(project: Path, study: str, notebooks=PIPELINE) -> Path:
    """Execute the notebooks headless in ``project`` exactly as `make reproduce` does
    (pedlib.notebooks.run_notebooks: params checked first, temporary names, progress lines);
    returns the folder of the executed notebooks."""
    pytest.importorskip("papermill")
    from pedlib.notebooks import run_notebooks as run

    params = project / "params" / f"{study}.yaml"
    run(str(params), notebooks, parameters={"progress": True})
    return project / "results" / study / "notebooks"


#: Test files with tests of a minute or more, collected first and in this order: `make test`
#: runs pytest-xdist with --dist loadfile --no-loadscope-reorder (each file on one worker, so
#: a module fixture such as the smoke or paper study is made once, and the files go out in
#: collection order), so the two workers start on the long files and the quick ones fill in.
SLOW_FIRST = ("test_paper_study.py", "test_pipeline.py", "test_cluster.py", "test_benchmarks.py", "test_readme.py",
              "test_rank.py")


def pytest_collection_modifyitems(config, items):
    items.sort(key=lambda item: SLOW_FIRST.index(item.path.name) if item.path.name in SLOW_FIRST
               else len(SLOW_FIRST))
