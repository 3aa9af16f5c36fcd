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
    ([{"image_id": 123, "category_id": 1, "bbox": [0, 0, 5, 5], "score": 0.5}], "entries whose image_id is not in the ground truth: #0 (123)"),
    ({"detections": []}, "is neither a COCO results list"),
    ([[1, 2, 3]], "entries that are not objects (not a list of detections): #0"),
    # NaN and ±Infinity (bare JSON tokens Python's json reads) used to be accepted and changed AP
    ('[{"image_id": 397133, "category_id": 1, "bbox": [0, 0, 5, 5], "score": NaN},'
     ' {"image_id": 397133, "category_id": 1, "bbox": [0, 0, 5, 5], "score": Infinity},'
     ' {"image_id": 397133, "category_id": 1, "bbox": [0, 0, 5, 5], "score": -Infinity}]',
     "entries whose score is not a finite number: #0 (nan), #1 (inf), #2 (-inf)"),
    ([{"image_id": 397133, "category_id": 1, "score": 0.5, "segmentation": [[1, 2, 3, 4]]}],
     "#0 (polygon 0 has 4 numbers, fewer than 3 points)"),
])
def test_bad_results_file(tmp_path, content, msg):
    bad = tmp_path/"bad_preds.json"; bad.write_text(content if isinstance(content, str) else json.dumps(content))
    r = run_cli("--gt", sample_dataset("coco_val_mini").annotations, "--pred", bad, "--out", tmp_path/"o")
    assert r.returncode == 1
    assert str(bad) in r.stderr and msg in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and r.stderr.startswith("cutler-eval: error: "), r.stderr
    assert not (tmp_path/"o"/"metrics.json").exists()


def test_debug_shows_traceback(tmp_path):
    "`CUTLER_NB_DEBUG=1` turns the one-line error back into the traceback."
    bad = tmp_path/"bad.json"; bad.write_text('[{"image_id": 1, "category_id": 1, "bbox": [0, 0, 5, 5], "score": NaN}]')
    env = dict(os.environ, HF_HUB_OFFLINE="1", MPLBACKEND="Agg", CUTLER_NB_DEBUG="1")
    r = subprocess.run([str(CLI), "--gt", sample_dataset("coco_val_mini").annotations, "--pred", bad, "--out", tmp_path/"o"],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 1 and "Traceback" in r.stderr and "AnnotationError" in r.stderr, r.stderr


def test_missing_args(tmp_path):
    r = run_cli("--out", tmp_path)
    assert r.returncode == 1 and "--gt" in r.stderr


@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o077, 0o600)])
def test_outputs_follow_umask(tmp_path, umask, mode):
    "Written files get the mode any other tool would give them (they used to be 0600 whatever the umask)."
    s = sample_dataset("coco_val_mini")
    env = dict(os.environ, HF_HUB_OFFLINE="1", MPLBACKEND="Agg")
    r = subprocess.run([str(CLI), "--gt", s.annotations, "--pred", s.annotations, "--iou_type", "bbox", "--splits", "all",
                        "--out", tmp_path/"o"], capture_output=True, text=True, env=env, timeout=300,
                       preexec_fn=lambda: os.umask(umask))
    assert r.returncode == 0, r.stderr
    for f in ("metrics.json", "tables/eval_bbox.csv", "tables/eval_bbox.md", "figures/eval_ap.png"):
        assert (tmp_path/"o"/f).stat().st_mode & 0o777 == mode, f
