"End-to-end tests of `cutler-eval` on the bundled COCO sample's ground truth."
import csv, hashlib, json, os, subprocess, sys
from pathlib import Path
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

from cutler_nb.data import sample_dataset, read_coco
from cutler_nb.evaluate import gt_as_results, perturb_predictions, SPLIT_LABELS

CLI = Path(sys.executable).parent/"cutler-eval"
# independent counts (SOURCE.md of the two upstream excerpts): 284 + 76 non-crowd instances,
# 223 + 43 of them overlap another's box, 185 + 34 another's mask
N_INST, N_BOX_OV, N_MASK_OV = 360, 266, 219


def run_cli(*args, cwd=None):
    env = dict(os.environ, HF_HUB_OFFLINE="1", MPLBACKEND="Agg")
    return subprocess.run([str(CLI), *map(str, args)], capture_output=True, text=True, env=env, cwd=cwd, timeout=300)


def sha(p): return hashlib.sha256(Path(p).read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def preds(tmp_path_factory):
    d = tmp_path_factory.mktemp("preds")
    gt = read_coco(sample_dataset("coco_val_mini").annotations)
    (d/"perfect.json").write_text(json.dumps(gt_as_results(gt)))
    (d/"noisy.json").write_text(json.dumps(perturb_predictions(gt, seed=1)))
    return d


def read_rows(p): return list(csv.reader(open(p, newline="")))


def test_two_models_all_splits(preds, tmp_path):
    gt = sample_dataset("coco_val_mini").annotations; before = sha(gt)
    out = tmp_path/"eval"
    r = run_cli("--gt", gt, "--pred", preds/"perfect.json", "--pred", preds/"noisy.json", "--names", "perfect,noisy",
                "--splits", "all,no_overlap,only_overlap", "--iou_type", "bbox,segm", "--criterion", "bbox", "--out", out)
    assert r.returncode == 0, r.stderr
    assert sha(gt) == before                                  # the user's ground truth is never edited
    for f in ("metrics.json", "tables/metrics.csv", "tables/eval_bbox.csv", "tables/eval_bbox.md",
              "tables/eval_segm.csv", "tables/eval_segm.md", "figures/eval_ap.png"):
        assert (out/f).stat().st_size > 0, f
    assert (out/"figures/eval_ap.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    m = json.loads((out/"metrics.json").read_text())
    assert m["n_instances"] == dict(all=N_INST, no_overlap=N_INST - N_BOX_OV, only_overlap=N_BOX_OV)
    for t in ("bbox", "segm"):
        rows = read_rows(out/f"tables/eval_{t}.csv")
        assert rows[0] == ["Eval dataset", "perfect", "noisy"]
        assert [r[0] for r in rows[1:]] == [SPLIT_LABELS[s] for s in ("all", "no_overlap", "only_overlap")]
        for s, row in zip(("all", "no_overlap", "only_overlap"), rows[1:]):
            assert row[1] == "100.00, 100.00"                 # the ground truth as predictions is perfect on every split
            mm = m["models"]["noisy"][t][s]
            assert row[2] == f"{100 * mm['AP']:.2f}, {100 * mm['AP50']:.2f}"
            assert 0 < mm["AP"] < mm["AP50"] < 1
        assert f"| {SPLIT_LABELS['all']} | 100.00, 100.00 |" in (out/f"tables/eval_{t}.md").read_text()
    assert "| COCO Eval | 100.00, 100.00 |" in r.stdout      # the Markdown tables are printed too


def test_pred_list_form_and_mask_criterion(preds, tmp_path):
    "`--pred A B` is the same as `--pred A --pred B`; the mask criterion splits by shared pixels."
    gt = sample_dataset("coco_val_mini").annotations
    r = run_cli("--gt", gt, "--pred", preds/"perfect.json", preds/"noisy.json", "--iou_type", "segm",
                "--splits", "no_overlap", "--criterion", "mask", "--out", tmp_path)
    assert r.returncode == 0, r.stderr
    m = json.loads((tmp_path/"metrics.json").read_text())
    assert list(m["models"]) == ["perfect", "noisy"]           # default names: file stems
    assert m["iou_types"] == ["segm"] and m["splits"] == ["no_overlap"]
    assert m["n_instances"] == dict(no_overlap=N_INST - N_MASK_OV)
    assert m["models"]["perfect"]["segm"]["no_overlap"]["AP"] == 1.0


def test_pseudo_labels_file(tmp_path):
    "A COCO instances file (MaskCut pseudo-labels) is evaluated directly, with a constant score."
    s = sample_dataset("coco_val_mini")
    r = run_cli("--gt", s.annotations, "--pred", s.annotations, "--names", "labels", "--iou_type", "segm", "--out", tmp_path)
    assert r.returncode == 0, r.stderr
    rows = read_rows(tmp_path/"tables/eval_segm.csv")
    assert [row[1] for row in rows[1:]] == ["100.00, 100.00"] * 3


@pytest.mark.parametrize("content,msg", [
    ([{"image_id": 123, "category_id": 1, "bbox": [0, 0, 5, 5], "score": 0.5}], "not in the ground truth: 123"),
    ({"detections": []}, "is neither a COCO results list"),
    ([[1, 2, 3]], "is not a list of detections"),
])
def test_bad_results_file(tmp_path, content, msg):
    bad = tmp_path/"bad_preds.json"; bad.write_text(json.dumps(content))
    r = run_cli("--gt", sample_dataset("coco_val_mini").annotations, "--pred", bad, "--out", tmp_path/"o")
    assert r.returncode == 1
    assert str(bad) in r.stderr and msg in r.stderr, r.stderr
    assert not (tmp_path/"o"/"metrics.json").exists()


def test_missing_args(tmp_path):
    r = run_cli("--out", tmp_path)
    assert r.returncode == 1 and "--gt" in r.stderr
