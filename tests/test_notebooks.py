"""Execute every notebook in notebooks/ with ECOMLM_NOTEBOOK_FAST=1 (small
slices of the sample shop), so they never rot. Needs nbclient and ipykernel
(the test extra) and the default models."""

import glob
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOKS = sorted(glob.glob(os.path.join(ROOT, "notebooks", "*.ipynb")))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[os.path.basename(p) for p in NOTEBOOKS])
def test_notebook_runs(path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    pytest.importorskip("matplotlib")
    try:
        from ecomlm.engine import registry

        registry.pull("all-minilm-l6-v2", progress=False)
        registry.pull("smollm2-135m-instruct", progress=False)
    except Exception as e:  # pragma: no cover - no network and no cache
        pytest.skip(f"default models unavailable: {e}")
    monkeypatch.setenv("ECOMLM_NOTEBOOK_FAST", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("PYTHONPATH", ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=240, kernel_name="python3",
                                     resources={"metadata": {"path": os.path.dirname(path)}})
    client.execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
