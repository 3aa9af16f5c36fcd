"The GroupViT fine-tuning experiment notebooks (`groupvit_finetune`, `groupvit_tables`) run through papermill with tiny parameters (random tiny GroupViT, synthetic captions: plumbing only)."
import csv, json, os
from pathlib import Path
import pytest

papermill = pytest.importorskip("papermill")
from PIL import Image

NB_DIR = Path(__file__).resolve().parent.parent/"nbs"/"experiments"
TINY = dict(model="tiny", data="sample", batch_size=2, size=64, benchmarks=["coco_object_mini"], eval_limit=1, eval_size=64, device="cpu")


def run_nb(name, params, tmp_path, monkeypatch):
    out = tmp_path/"outputs"
    for k, v in dict(CUTLER_NB_OUTPUTS=str(out), HF_HUB_OFFLINE="1", CUTLER_NB_OFFLINE="1", MPLBACKEND="Agg").items(): monkeypatch.setenv(k, v)
    papermill.execute_notebook(str(NB_DIR/f"{name}.ipynb"), str(tmp_path/f"{name}.out.ipynb"), parameters=params, cwd=str(NB_DIR),
                               kernel_name="python3", progress_bar=False)
    runs = [d for d in (out/name).iterdir() if d.is_dir()]
    assert len(runs) == 1, runs
    return runs[0]


def rows(p): return list(csv.reader(open(p, newline="")))


def check_png(p):
    with Image.open(p) as im: assert im.format == "PNG" and im.size[0] >= 300 and im.size[1] >= 150, (p, im.size)


def test_groupvit_finetune(tmp_path, monkeypatch):
    d = run_nb("groupvit_finetune", dict(TINY, preset="t11-ge", max_steps=2, entropy_images=1), tmp_path, monkeypatch)
    res = json.loads((d/"results.json").read_text())
    assert res["preset"] == "t11-ge" and res["steps"] == 2 and res["random_weights"] and res["caption_source"] == "synthetic-from-instances"
    assert 0 <= res["miou"]["coco_object_mini"] <= 100 and (Path(res["final_model"])/"config.json").exists()
    t = rows(d/"tables"/"final_miou.csv")
    assert t[0] == ["Method", "COCO (sample)"] and t[1][0] == "t11-ge (random weights) (synthetic captions)"
    assert "RANDOM weights" in (d/"tables"/"final_miou.md").read_text()
    m = rows(d/"tables"/"metrics.csv"); assert [r[0] for r in m[1:]] == ["1", "2"] and "ge" in m[0]
    for f in ("loss_curve.png", "miou_curve.png", "entropy_0.png"): check_png(d/"figures"/f)   # entropy maps before/after
    assert not (d/"figures"/"entropy_1.png").exists()                                         # entropy_images=1


def test_groupvit_tables(tmp_path, monkeypatch):
    d = run_nb("groupvit_tables", dict(TINY, table="t9", max_steps=1, tsne_images=2), tmp_path, monkeypatch)
    ours, thesis = rows(d/"tables"/"t9_ours.csv"), rows(d/"tables"/"t9_thesis.csv")
    assert [r[0] for r in ours[1:]] == ["Fine-tuning (random weights) (synthetic captions)", "Fine-tuning with refined extraction (random weights) (synthetic captions)"]
    assert all(0 <= float(r[1]) <= 100 for r in ours[1:])
    assert thesis[0] == ["Method", "COCO", "PVOC", "PContext", "ADE20K"] and thesis[2][1:] == ["26.20", "49.37", "21.88", "7.61"]
    cfgs = [json.loads((d/"runs"/p/"train_config.json").read_text())["config"] for p in ("t9-finetune", "t9-refined")]
    assert [c["fill"] for c in cfgs] == ["caption", "pad"]   # the rows differ as the table says
    for f in ("t9_miou.png", "t9_loss.png"): check_png(d/"figures"/f)
    # per-class ΔIoU against the starting model (Figs. 23-24): one row per class scored before and after, Δ = after - before
    for p in ("t9-finetune", "t9-refined"):
        delta = rows(d/"tables"/f"t9_delta_iou_{p}.csv")
        assert delta[0] == ["Class", "IoU before", "IoU after", "ΔIoU"] and len(delta) > 1
        assert all(abs(float(r[2]) - float(r[1]) - float(r[3])) < 0.011 for r in delta[1:])
        assert [float(r[3]) for r in delta[1:]] == sorted((float(r[3]) for r in delta[1:]), reverse=True)
        assert "random weights" in (d/"tables"/f"t9_delta_iou_{p}.md").read_text().lower()
        start = json.loads((d/"runs"/p/"eval"/"start"/"coco_object_mini"/"results.json").read_text())
        assert all(start["iou"][r[0]] is not None and abs(float(r[1]) - start["iou"][r[0]]) < 0.006 for r in delta[1:])   # "before" = the start eval
        check_png(d/"figures"/f"t9_delta_iou_{p}.png")
    for f in ("t9_tsne_start.png", "t9_tsne_t9-refined.png"): check_png(d/"figures"/f)   # t-SNE (Fig. 25): start and last row
    assert not (d/"figures"/"t9_tsne_t9-finetune.png").exists()                            # tsne_all=False
