"""Execute the inspection notebooks top to bottom, as CI does, and check their outputs.

Each notebook runs in a fresh Jupyter kernel started from *this* interpreter (a
kernel spec written to a temporary folder, so no "python3" kernel needs to be
installed), with notebooks/ as the working directory and matplotlib's inline
backend. nbclient raises on the first cell error and enforces a per-cell timeout.
Checkpoints go to a temporary LOGS_DIR, injected after each notebook's
"parameters" cell (papermill's convention), never to the repository's logs/.

Total time: roughly 3-4 minutes on 2 CPU cores of a recent Xeon or EPYC (about 12 on an
older AVX2 one), most of it the model notebook's training steps.
"""
import base64
import json
import os
import re
import sys

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

NOTEBOOKS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "notebooks")
NOTEBOOKS = ("inspect_data", "inspect_model", "inspect_weights")
KERNEL_NAME = "mrcnn-test-python"
# Generous: the model notebook's training cell is the slowest (about a minute on 2
# cores, several when the machine is shared).
CELL_TIMEOUT_S = 900
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


############################################################
#  Running notebooks
############################################################

@pytest.fixture(scope="module")
def kernel_specs(tmp_path_factory):
    """A kernel spec that runs ipykernel in the interpreter running the tests."""
    folder = tmp_path_factory.mktemp("kernels")
    spec_dir = folder / KERNEL_NAME
    spec_dir.mkdir()
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "mrcnn tests",
        "language": "python",
        # conftest/CI set MPLBACKEND=Agg, which the kernel would inherit; notebooks
        # need the inline backend for figures to become outputs.
        "env": {"MPLBACKEND": "module://matplotlib_inline.backend_inline",
                "TF_CPP_MIN_LOG_LEVEL": "2"},
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    return KernelSpecManager(kernel_dirs=[str(folder)])


def load_notebook(name):
    return nbformat.read(os.path.join(NOTEBOOKS_DIR, name + ".ipynb"), as_version=4)


def run_notebook(name, kernel_specs, **parameters):
    """Execute notebooks/<name>.ipynb with `parameters` overriding its settings cell.

    Returns the executed notebook; raises nbclient's CellExecutionError on a cell error.
    """
    nb = load_notebook(name)
    settings = [i for i, cell in enumerate(nb.cells)
                if "parameters" in cell.metadata.get("tags", [])]
    assert len(settings) == 1, f"{name}: expected one cell tagged 'parameters', found {len(settings)}"
    overrides = "\n".join(f"{key} = {value!r}" for key, value in parameters.items())
    nb.cells.insert(settings[0] + 1, nbformat.v4.new_code_cell(overrides))
    km = KernelManager(kernel_name=KERNEL_NAME, kernel_spec_manager=kernel_specs)
    client = NotebookClient(nb, km=km, timeout=CELL_TIMEOUT_S,
                            resources={"metadata": {"path": NOTEBOOKS_DIR}})
    client.execute()
    return nb


############################################################
#  Reading outputs
############################################################

def stdout_of(nb):
    return "".join(out.get("text", "") for cell in nb.cells if cell.cell_type == "code"
                   for out in cell.outputs if out.output_type == "stream" and out.name == "stdout")


def rich_outputs(cell, mime):
    return [out["data"][mime] for out in cell.get("outputs", [])
            if out.output_type in ("display_data", "execute_result") and mime in out.get("data", {})]


def assert_figures(nb, name):
    """Every cell tagged 'figure' displayed at least one non-empty PNG."""
    tagged = [(i, cell) for i, cell in enumerate(nb.cells) if "figure" in cell.metadata.get("tags", [])]
    assert tagged, f"{name}: no cell is tagged 'figure'"
    for i, cell in tagged:
        pngs = rich_outputs(cell, "image/png")
        assert pngs, f"{name}: cell {i} is tagged 'figure' but displayed no PNG:\n{cell.source[:300]}"
        for png in pngs:
            raw = base64.b64decode(png)
            assert raw.startswith(PNG_MAGIC) and len(raw) > 1000, f"{name}: cell {i} PNG is not an image"


def number_after(text, label):
    match = re.search(re.escape(label) + r"\s*([-+0-9.eE]+)", text)
    assert match, f"no '{label}' line in the output:\n{text[-2000:]}"
    return float(match.group(1))


############################################################
#  Tests
############################################################

@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_notebooks_have_no_outputs(name):
    nb = load_notebook(name)
    nbformat.validate(nb)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, \
                f"{name}.ipynb cell {i} carries outputs; strip them before committing"


def test_inspect_data_runs_and_shows_the_pipeline(kernel_specs, tmp_path):
    nb = run_notebook("inspect_data", kernel_specs)
    assert_figures(nb, "inspect_data")
    out = stdout_of(nb)
    # The augmentation check: masks moved exactly with the flipped image.
    assert "Flipped image equals the mirrored original: True" in out
    assert "Flipped masks equal the mirrored original masks: True" in out
    # Positive anchors refined with their RPN targets land on the ground-truth boxes.
    positives = number_after(out, "Positive anchors:")
    assert positives >= 1
    assert number_after(out, "its ground-truth box (px):") < 1e-3
    tables = [html for cell in nb.cells for html in rich_outputs(cell, "text/html")]
    assert any("INSTANCES" in t for t in tables) and any("ANCHORS" in t for t in tables)


def test_inspect_data_reads_a_tinyvoc_folder(kernel_specs, tmp_path):
    # The DATASET setting's other branch: real data in the tinyvoc (COCO JSON) layout.
    from samples.synthetic_tinyvoc import write_synthetic_tinyvoc

    folder = tmp_path / "tinyvoc"
    info = write_synthetic_tinyvoc(str(folder), n_train=8, n_test=1, with_defects=False)
    nb = run_notebook("inspect_data", kernel_specs, DATASET=str(folder))
    assert_figures(nb, "inspect_data")
    out = stdout_of(nb)
    # load_subset holds out a validation share, so "train" has fewer than all images.
    assert 1 <= number_after(out, "Images:") < info["train_images"]
    assert number_after(out, "Classes:") == 21
    assert "Flipped masks equal the mirrored original masks: True" in out


@pytest.fixture(scope="module")
def model_run(kernel_specs, tmp_path_factory):
    """inspect_model.ipynb executed with a temporary LOGS_DIR (it trains and saves there)."""
    logs = tmp_path_factory.mktemp("notebook_logs")
    # 12 of the notebook's 40 steps: its checks hold for any model, and training was
    # most of this file's time (40 steps: 7-12 min on a 2-core AVX2 EPYC, 2026-12-02).
    nb = run_notebook("inspect_model", kernel_specs, LOGS_DIR=str(logs), TRAIN_STEPS=12)
    return nb, logs


def test_inspect_model_trains_detects_and_explains_each_stage(model_run):
    nb, logs = model_run
    assert_figures(nb, "inspect_model")
    out = stdout_of(nb)
    checkpoints = [f for _, _, files in os.walk(logs) for f in files if f.endswith(".h5")]
    assert checkpoints, f"no checkpoint written under {logs}"
    match = re.search(r"mAP@0.5 over (\d+) images: ([0-9.]+)", out)
    assert match, out[-3000:]
    assert int(match.group(1)) >= 1 and 0.0 <= float(match.group(2)) <= 1.0
    # The probe model built from named layers sees the same proposals as the model output,
    # and the numpy re-implementation of the proposal layer agrees with it.
    assert "Probe 'ROI' equals the model's rois output: True" in out
    assert re.search(r"numpy: (\d+) proposals, ROI layer: \1; identical: True", out), out[-3000:]
    match = re.search(r"numpy keeps (\d+), mrcnn_detection returned (\d+)", out)
    assert match and match.group(1) == match.group(2), out[-3000:]
    if "Same boxes:" in out:
        assert "Same boxes: True  same classes: True" in out


def test_inspect_weights_trains_when_there_is_no_checkpoint(kernel_specs, tmp_path):
    nb = run_notebook("inspect_weights", kernel_specs, LOGS_DIR=str(tmp_path))
    assert_figures(nb, "inspect_weights")
    out = stdout_of(nb)
    assert "training 2 steps here instead" in out
    assert "Non-finite values (NaN/inf): none" in out
    tables = [html for cell in nb.cells for html in rich_outputs(cell, "text/html")]
    assert any("WEIGHT NAME" in t and "conv1" in t for t in tables)


def test_inspect_weights_loads_the_model_notebooks_checkpoint(kernel_specs, model_run):
    _, logs = model_run
    nb = run_notebook("inspect_weights", kernel_specs, LOGS_DIR=str(logs))
    assert_figures(nb, "inspect_weights")
    out = stdout_of(nb)
    assert "training 2 steps here instead" not in out
    assert re.search(r"Loaded \d+ layers from " + re.escape(str(logs)), out), out[-2000:]
