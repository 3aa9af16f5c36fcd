"""`nbs/experiments/groupvit_analysis.ipynb` end to end through papermill with tiny parameters (random tiny GroupViT,
the `classic` backbone, bundled COCO-Object photos): the tables parse with the thesis's rows, the figures are PNGs,
params.json records the run as random weights, and a changed parameter changes the run."""
import csv, json, os
from pathlib import Path
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

papermill = pytest.importorskip("papermill")
from PIL import Image

NB = Path(__file__).resolve().parent.parent/"nbs"/"experiments"/"groupvit_analysis.ipynb"


def run_nb(params, tmp_path, monkeypatch):
    out = tmp_path/"outputs"
    monkeypatch.setenv("CUTLER_NB_OUTPUTS", str(out)); monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("CUTLER_NB_OFFLINE", "1"); monkeypatch.setenv("MPLBACKEND", "Agg")
    papermill.execute_notebook(str(NB), str(tmp_path/f"groupvit_analysis.{params['run_id']}.ipynb"), parameters=params,
                               cwd=str(NB.parent), kernel_name="python3", progress_bar=False)
    return out/"groupvit_analysis"/params["run_id"]


def rows(p): return list(csv.reader(open(p, newline="")))


def test_parameters_cell():
    nb = json.loads(NB.read_text())
    tagged = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1 and tagged[0]["cell_type"] == "code"
    assert nb["metadata"]["kernelspec"]["language"] == "python"
    assert not any(c.get("outputs") for c in nb["cells"] if c["cell_type"] == "code")     # committed stripped


def test_groupvit_analysis(tmp_path, monkeypatch):
    p = dict(limit=4, ks=[1, 3], k_table3=3, size=160, crop=160, stride=80, affinity_size=96, affinity_images=1,
             entropy_images=1, run_id="tiny")
    run = run_nb(p, tmp_path, monkeypatch)
    t3 = rows(run/"tables"/"table3.csv")
    assert t3[0] == ["Model", "Type", "coco_object_mini"]
    assert [r[1] for r in t3[1:]] == ["Original", "Visual Grouping (k = 3)", "Visual Grouping (WB, k = 3)", "Visual-Text Alignment"]
    for r in t3[1:]: assert 0 <= float(r[2]) <= 100, r
    t4 = rows(run/"tables"/"table4.csv")
    assert [int(r[1]) for r in t4[1:]] == [1, 3] and all(0 <= float(r[2]) <= 100 for r in t4[1:])
    assert t4[2][2] == t3[2][2]                                         # Table 3's k-NN row is Table 4's k = 3
    md = (run/"tables"/"table3.md").read_text()
    assert "plumbing run: random weights" in md
    par = json.loads((run/"params.json").read_text())["params"]
    assert par["random_weights"] is True and par["note"] == "plumbing run: random weights" and par["ks"] == [1, 3]
    res = json.loads((run/"results.json").read_text())
    assert res["bank_segments"] > 0 and set(res["visual_grouping"]) == {"1", "3"}
    assert len(res["figures"]) == 2 and all(0 <= e["group_entropy_mean"] <= 1 + 1e-6 for e in res["entropy"])
    for f in res["figures"]:
        with Image.open(run/"figures"/f) as im: assert im.format == "PNG" and im.size[0] >= 200 and im.size[1] >= 100, (f, im.size)
    # another k list: another run folder, another Table 4
    run2 = run_nb(dict(p, ks=[2], k_table3=2, affinity_images=0, entropy_images=0, run_id="k2"), tmp_path, monkeypatch)
    assert [int(r[1]) for r in rows(run2/"tables"/"table4.csv")[1:]] == [2]
    assert json.loads((run2/"results.json").read_text())["figures"] == []
