"The `groupvit_zero_shot` experiment notebook, run end to end through papermill with tiny parameters."
import csv, json, os
from pathlib import Path
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
papermill = pytest.importorskip("papermill")
from PIL import Image

NB = Path(__file__).resolve().parent.parent/"nbs"/"experiments"/"groupvit_zero_shot.ipynb"
TINY = dict(limit=2, size=64, crop=64, stride=32, grid_sizes=[64], grid_thresholds=[0.9, 0.95], n_figures=1, device="cpu")


def run_nb(params, tmp_path, monkeypatch, tag="run"):
    out = tmp_path/"outputs"
    monkeypatch.setenv("CUTLER_NB_OUTPUTS", str(out)); monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("CUTLER_NB_OFFLINE", "1"); monkeypatch.setenv("MPLBACKEND", "Agg")
    papermill.execute_notebook(str(NB), str(tmp_path/f"zero_shot.{tag}.ipynb"), parameters=params, cwd=str(NB.parent),
                               kernel_name="python3", progress_bar=False)
    runs = sorted((out/"groupvit_zero_shot").iterdir(), key=lambda p: p.stat().st_mtime)
    return runs[-1]


def rows(p): return list(csv.reader(open(p, newline="")))


def test_zero_shot_tiny(tmp_path, monkeypatch):
    run = run_nb(TINY, tmp_path, monkeypatch)
    t = rows(run/"tables/zero_shot_miou.csv")
    assert t[0] == ["dataset", "images", "mIoU (this run)", "thesis Original (released weights)"]
    assert t[1][:2] == ["coco_object_mini", "2"] and 0 <= float(t[1][2]) <= 100 and t[1][3] == "24.3"
    assert "plumbing run: random weights" in (run/"tables/zero_shot_miou.md").read_text()
    g = rows(run/"tables/table14_inference_settings.csv")
    assert [r[:2] for r in g[1:]] == [["64", "0.9"], ["64", "0.95"]] and all(0 <= float(r[2]) <= 100 for r in g[1:])
    assert "plumbing run: random weights" in (run/"tables/table14_inference_settings.md").read_text()
    figs = sorted(p.name for p in (run/"figures").glob("*.png"))
    assert figs == ["iou_per_class_coco_object_mini.png", "qualitative_coco_object_mini_000000006818.png"]
    for f in figs:
        with Image.open(run/"figures"/f) as im: assert im.format == "PNG" and im.size[0] >= 200
    params = json.loads((run/"params.json").read_text())["params"]
    assert params["random_weights"] and params["grid_thresholds"] == [0.9, 0.95]
    summary = json.loads((run/"summary.json").read_text())
    assert set(summary["table14"]) == {"64/0.9/coco_object_mini", "64/0.95/coco_object_mini"}
    # every evaluation is its own resumable folder; the same parameters reuse them, other parameters get another run
    recs = sorted((run/"predictions").glob("*/records/*.jsonl"))
    assert len(recs) == 2 and all(len(p.read_text().splitlines()) == 3 for p in recs)   # 64/0.9 is the main evaluation, reused
    run2 = run_nb(dict(TINY, grid_thresholds=[0.99]), tmp_path, monkeypatch, "other")
    assert run2 != run and [r[1] for r in rows(run2/"tables/table14_inference_settings.csv")[1:]] == ["0.99"]
