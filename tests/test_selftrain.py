"End-to-end checks of self-training and the MaskCut filter: library calls and the cutler-selftrain / cutler-filter CLIs on the bundled sample (CPU)."
import json, os, subprocess, sys
from pathlib import Path
import numpy as np
import pycocotools.mask as mask_utils
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import torch
from cutler_nb.core import CutlerError, read_json
from cutler_nb.data import sample_dataset, read_coco, write_coco, make_coco, mask_annotation, mask_to_rle, coco_problems
from cutler_nb.selftrain import selftrain, no_overlap_set, merge_pseudo_labels

BIN = Path(sys.executable).parent
ENV = dict(os.environ, HF_HUB_OFFLINE="1")
IMAGES = (565004, 475546)   # two of coco_train_mini's photos, trained on at batch size 1: a short CPU run
# a small, fast training setting; the CLI passes the same through --overrides, so both resume each other
TINY = dict(min_sizes=[160], max_size=256, test_min_size=160)
ARGS = dict(rounds=1, score_thresholds=[0.0], max_iter=2, device="cpu", max_dets=5, batch_size=1, **TINY)

def _cli(name, *args):
    r = subprocess.run([str(BIN/name), *map(str, args)], capture_output=True, text=True, env=ENV, timeout=600)
    assert r.returncode == 0, f"{name} failed:\n{r.stdout}\n{r.stderr}"
    return r.stdout

@pytest.fixture(scope="module")
def mini(tmp_path_factory):
    "A 2-image subset of coco_train_mini (ground truth standing in for MaskCut's labels) and its image folder."
    s = sample_dataset("coco_train_mini"); d = read_coco(s.annotations)
    sub = make_coco([im for im in d["images"] if im["id"] in IMAGES], [a for a in d["annotations"] if a["image_id"] in IMAGES],
                    d["categories"], d.get("info"))
    p = write_coco(sub, tmp_path_factory.mktemp("data")/"mini.json")
    return p, s.images

@pytest.fixture(scope="module")
def run1(mini, tmp_path_factory):
    "One self-training round (detector 0, merge, detector 1), 2 iterations each, in a fresh run folder."
    ann, images = mini
    out = tmp_path_factory.mktemp("runs")/"selftrain"/"r1"
    return out, selftrain(ann, images, out, **ARGS)

def test_one_round(mini, run1):
    ann, _ = mini; out, res = run1
    test_files = ["params.json", "labels/round_0.json", "labels/round_1.json", "predictions/round_0.json",
                  "tables/selftrain.csv", "tables/selftrain.md", "selftrain.log"]
    for f in test_files: assert (out/f).exists(), f
    assert not (out/"predictions/round_1.json").exists()   # the last detector's output is not merged
    assert read_json(out/"labels/round_0.json") == read_json(ann)
    assert [r["round"] for r in res["rounds"]] == [0, 1] and not any(r["skipped"] for r in res["rounds"])
    assert all(Path(r["checkpoint"]).exists() for r in res["rounds"]) and res["checkpoint"] == res["rounds"][1]["checkpoint"]
    assert res["labels"] == out/"labels/round_1.json"
    preds = read_json(out/"predictions/round_0.json")
    assert {p["image_id"] for p in preds} <= set(IMAGES) and all(sum(p["image_id"] == i for p in preds) <= 5 for i in IMAGES)
    new = read_coco(out/"labels/round_1.json")
    assert coco_problems(new) == [] and [a["id"] for a in new["annotations"]] == list(range(1, len(new["annotations"]) + 1))
    c = new["info"]["counts"]
    # score threshold 0: every prediction with a non-empty mask is kept; the old labels fill up the rest
    nonempty = sum(1 for p in preds if mask_utils.area(p["segmentation"]) > 0)
    assert c["pred"] == nonempty and c["pred"] + c["empty_dropped"] == len(preds)
    assert c["prev"] + c["prev_dropped"] == len(read_coco(ann)["annotations"])
    assert len(new["annotations"]) == c["pred"] + c["prev"]
    assert sum(a["source"] == "pred" for a in new["annotations"]) == c["pred"]
    rows = (out/"tables/selftrain.csv").read_text().splitlines()
    assert len(rows) == 3 and rows[1].startswith("0,cpu-smoke,maskrcnn,True,") and rows[2].startswith("1,cpu-smoke,maskrcnn,False,")

def test_dropLoss_per_round_and_warm_start(run1):
    "CutLER's self-training config: detector 0 with DropLoss, the self-training detector without, from detector 0's weights."
    out, res = run1
    c0, c1 = (torch.load(r["checkpoint"], map_location="cpu", weights_only=True) for r in res["rounds"])
    assert (c0["build_config"]["drop_loss"], c1["build_config"]["drop_loss"]) == (True, False)
    assert c1["init_source"] == dict(init="checkpoint", weights=str(out/"checkpoints/round_0/checkpoints/last.pth"))

def test_resume_skips_finished_round(mini, run1):
    ann, images = mini; out, _ = run1
    files = [out/"labels/round_1.json", out/"predictions/round_0.json", *sorted((out/"checkpoints").rglob("*.pth"))]
    before = {f: f.stat().st_mtime_ns for f in files}
    res = selftrain(ann, images, out, **ARGS)
    assert [r["skipped"] for r in res["rounds"]] == [True, True]
    assert {f: f.stat().st_mtime_ns for f in files} == before   # nothing retrained, re-predicted or rewritten
    with pytest.raises(CutlerError, match="different settings"):
        selftrain(ann, images, out, **dict(ARGS, iou_thresh=0.6))

def test_cli_second_round_warm_start(mini, run1):
    "The CLI resumes the library's run folder (same parameters), skips detectors 0 and 1 and trains detector 2 from detector 1's weights."
    ann, images = mini; out, _ = run1
    stdout = _cli("cutler-selftrain", ann, images, out, "--rounds", 2, "--score_thresholds", "0.0", "--max_iter", 2,
                  "--device", "cpu", "--max_dets", 5, "--batch_size", 1, "--overrides", json.dumps(TINY))
    assert "detector 0: skipped" in stdout and "detector 1: skipped" in stdout and "detector 2: done" in stdout, stdout
    assert "cutler-selftrain: 2 round(s), 3 detectors (2 done before)" in stdout, stdout
    assert (out/"labels/round_2.json").exists() and (out/"predictions/round_1.json").exists()
    ck = torch.load(out/"checkpoints/round_2/checkpoints/last.pth", map_location="cpu", weights_only=True)
    assert ck["init_source"] == dict(init="checkpoint", weights=str(out/"checkpoints/round_1/checkpoints/last.pth"))
    assert ck["build_config"]["drop_loss"] is False
    assert len((out/"tables/selftrain.csv").read_text().splitlines()) == 4

def test_merge_and_filter_validate_predictions(mini, tmp_path):
    "Predictions whose image ids the labels do not know (shifted ids) are an error in merge and filter, not silently dropped."
    ann, _ = mini
    d = read_coco(ann); im = d["images"][0]
    m = np.zeros((im["height"], im["width"]), bool); m[:5, :5] = True
    preds = [dict(image_id=max(IMAGES) + 1, category_id=1, segmentation=mask_to_rle(m), bbox=[0, 0, 5, 5], score=0.9)]
    (tmp_path/"shifted.json").write_text(json.dumps(preds))
    with pytest.raises(CutlerError, match="image_id is not in the ground truth"): merge_pseudo_labels(ann, tmp_path/"shifted.json")
    r = subprocess.run([str(BIN/"cutler-filter"), "--pseudo", str(ann), "--pred", str(tmp_path/"shifted.json"), "--out", str(tmp_path/"k.json")],
                       capture_output=True, text=True, env=ENV, timeout=600)
    assert r.returncode == 1 and "image_id is not in the ground truth" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not (tmp_path/"k.json").exists()

def _box(h, w, y0, y1, x0, x1):
    m = np.zeros((h, w), bool); m[y0:y1, x0:x1] = True; return m

def test_filter_cli_known_answer(tmp_path):
    "Hand-made 10x10 files: a mask is kept when a detection scoring >= 0.3 matches it with IoU >= 0.5."
    P = _box(10, 10, 0, 4, 0, 4)
    half, seven, far = _box(10, 10, 0, 4, 0, 2), _box(10, 10, 0, 4, 0, 2), _box(10, 10, 6, 10, 6, 10)
    seven[3, 1] = False
    pseudo = make_coco([dict(id=1, file_name="a.png", width=10, height=10)],
                       [mask_annotation(m, i, 1) for i, m in ((1, P), (2, half), (3, seven), (4, far))])
    preds = [dict(image_id=1, category_id=1, segmentation=mask_to_rle(P), bbox=[0, 0, 4, 4], score=0.3),
             dict(image_id=1, category_id=1, segmentation=mask_to_rle(far), bbox=[6, 6, 4, 4], score=0.29)]
    write_coco(pseudo, tmp_path/"p.json"); (tmp_path/"pred.json").write_text(json.dumps(preds))
    stdout = _cli("cutler-filter", "--pseudo", tmp_path/"p.json", "--pred", tmp_path/"pred.json", "--out", tmp_path/"k.json",
                  "--removed", tmp_path/"r.json")
    assert "cutler-filter: kept 2 of 4 masks" in stdout
    assert [a["id"] for a in read_coco(tmp_path/"k.json")["annotations"]] == [1, 2]
    assert [a["id"] for a in read_coco(tmp_path/"r.json")["annotations"]] == [3, 4]
    _cli("cutler-filter", "--pseudo", tmp_path/"p.json", "--pred", tmp_path/"pred.json", "--out", tmp_path/"k2.json",
         "--score_thresh", 0.29, "--criterion", "box")
    assert [a["id"] for a in read_coco(tmp_path/"k2.json")["annotations"]] == [1, 2, 3, 4]

def test_filter_cli_with_checkpoint(mini, run1, tmp_path):
    "--checkpoint predicts first (predictions written beside --out); no detection can reach score 1.01, so every mask goes."
    ann, images = mini; out, res = run1
    stdout = _cli("cutler-filter", "--pseudo", ann, "--checkpoint", res["rounds"][0]["checkpoint"], "--image_root", images,
                  "--out", tmp_path/"kept.json", "--removed", tmp_path/"removed.json", "--score_thresh", 1.01,
                  "--max_dets", 3, "--device", "cpu")
    n = len(read_coco(ann)["annotations"])
    assert f"kept 0 of {n} masks" in stdout, stdout
    preds = read_json(tmp_path/"kept.predictions.json")
    assert isinstance(preds, list) and {p["image_id"] for p in preds} <= set(IMAGES)
    assert len(read_coco(tmp_path/"removed.json")["annotations"]) == n

def _boxes_intersect(a, b):
    return min(a[0] + a[2], b[0] + b[2]) > max(a[0], b[0]) and min(a[1] + a[3], b[1] + b[3]) > max(a[1], b[1])

def test_no_overlap_on_sample():
    "wo-ol on the bundled sample: an instance is dropped exactly when its box meets another instance's box with positive area."
    s = sample_dataset("coco_train_mini"); d = read_coco(s.annotations)
    kept = {a["id"] for a in no_overlap_set(s.annotations)["annotations"]}
    for a in d["annotations"]:
        if a["iscrowd"]: assert a["id"] in kept; continue
        others = [b for b in d["annotations"] if b["image_id"] == a["image_id"] and b["id"] != a["id"] and not b["iscrowd"]]
        assert (a["id"] in kept) == (not any(_boxes_intersect(a["bbox"], b["bbox"]) for b in others)), a["id"]
    assert 0 < len(kept) < len(d["annotations"])
