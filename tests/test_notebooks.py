"""Execute every notebook in notebooks/ with ECOMLM_NOTEBOOK_FAST=1 (small
slices of the sample shop), so they never rot. Needs nbclient and ipykernel
(the test extra) and the default models."""

import glob
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOKS = sorted(glob.glob(os.path.join(ROOT, "notebooks", "*.ipynb")))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[os.path.basename(p) for p in NOTEBOOKS])
def test_notebook_runs(path, monkeypatch, tmp_path):
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
    if os.path.basename(path) == "fine_tuning.ipynb":
        # the default chat model is a GGUF file, which cannot be trained: a tiny random Llama
        # checkpoint with SmolLM2's vocabulary stands in, so the LoRA run and its loss curve execute
        pytest.importorskip("transformers")
        import sys

        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from helpers import save_hf, tiny_llama

        ft_dir = str(tmp_path / "tiny-llama")
        save_hf(tiny_llama(vocab_size=49152, max_position_embeddings=1024), ft_dir)
        monkeypatch.setenv("ECOMLM_FT_MODEL", ft_dir)
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=240, kernel_name="python3",
                                     resources={"metadata": {"path": os.path.dirname(path)}})
    client.execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    if os.path.basename(path) == "fine_tuning.ipynb":      # the LoRA run happened
        text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
        assert "steps: training loss" in text, text[-500:]
