"""The experiment notebooks of `nbs/experiments/`, run end to end through papermill with tiny parameters.

Each test checks that every declared output exists and is well formed (tables parse with the expected
rows and columns, figures are PNGs of a sensible size, JSON files validate as COCO instances files or
results lists) and that a changed parameter changes the run."""
import csv, json, os
from pathlib import Path
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

papermill = pytest.importorskip("papermill")
from PIL import Image
from cutler_nb.data import sample_dataset, read_coco, write_coco, make_coco
from cutler_nb.evaluate import SPLIT_LABELS, SPLITS, METRICS

NB_DIR = Path(__file__).resolve().parent.parent/"nbs"/"experiments"
EVAL_ROWS = [SPLIT_LABELS[s] for s in SPLITS]


def run_nb(name, params, tmp_path, monkeypatch):
    "Execute `nbs/experiments/<name>.ipynb` with `params`, outputs under tmp_path; returns the study folder."
    out = tmp_path/"outputs"
    monkeypatch.setenv("CUTLER_NB_OUTPUTS", str(out)); monkeypatch.setenv("HF_HUB_OFFLINE", "1"); monkeypatch.setenv("MPLBACKEND", "Agg")
    papermill.execute_notebook(str(NB_DIR/f"{name}.ipynb"), str(tmp_path/f"{name}.{params.get('run_id', 'run')}.ipynb"),
                               parameters=params, cwd=str(NB_DIR), kernel_name="python3", progress_bar=False)
    return out/name


def rows(p): return list(csv.reader(open(p, newline="")))


def check_png(p, min_w=300, min_h=150):
    with Image.open(p) as im:
        assert im.format == "PNG", p
        assert im.size[0] >= min_w and im.size[1] >= min_h, (p, im.size)


def check_results(p):
    "A COCO results list: image_id, category_id, bbox of 4, segmentation (RLE with str counts, or polygons), score in [0, 1]."
    res = json.loads(Path(p).read_text())
    assert isinstance(res, list), p
    for r in res:
        assert isinstance(r["image_id"], int) and isinstance(r["category_id"], int) and len(r["bbox"]) == 4 and 0 <= r["score"] <= 1, r
        seg = r["segmentation"]
        if isinstance(seg, dict): assert isinstance(seg["counts"], str) and len(seg["size"]) == 2, seg   # compressed RLE
        else: assert seg and all(len(poly) >= 6 and len(poly) % 2 == 0 for poly in seg), seg            # polygons (the GT's own)
    return res


def check_eval_table(p, columns):
    "A thesis-style table: header `Eval dataset` + models, one row per split, cells 'AP, AP50' in percent."
    t = rows(p)
    assert t[0] == ["Eval dataset", *columns], t[0]
    assert [r[0] for r in t[1:]] == EVAL_ROWS
    for r in t[1:]:
        for cell in r[1:]:
            ap, ap50 = (float(x) for x in cell.split(", "))
            assert 0 <= ap <= ap50 <= 100, cell
    return t


def check_eval_outputs(run, models):
    m = json.loads((run/"metrics.json").read_text())
    assert list(m["models"]) == models and m["splits"] == list(SPLITS)
    for t in ("bbox", "segm"):
        check_eval_table(run/"tables"/f"eval_{t}.csv", models)
        assert (run/"tables"/f"eval_{t}.md").read_text().startswith("| Eval dataset |")
    long = rows(run/"tables"/"metrics.csv")
    assert long[0] == ["model", "iou_type", "split", *METRICS] and len(long) == 1 + len(models) * 2 * 3
    check_png(run/"figures"/"eval_ap.png")
    return m


def only_run(study):
    runs = [d for d in study.iterdir() if d.is_dir()]
    assert len(runs) == 1, runs
    return runs[0]


def subset_coco(src, n, dst):
    "The first n images of a COCO file (and their annotations), written to dst."
    d = read_coco(src); keep = sorted(d["images"], key=lambda im: im["id"])[:n]; ids = {im["id"] for im in keep}
    return write_coco(make_coco(keep, [a for a in d["annotations"] if a["image_id"] in ids], d["categories"]), dst)


NOTEBOOKS = ["overlap_eval", "similarity_metrics", "correspondences", "maskcut_demo", "maskcut_filter", "self_training",
             "groupvit_zero_shot", "groupvit_analysis", "groupvit_finetune", "groupvit_tables"]


def test_parameters_cells():
    "Each experiment notebook has one cell tagged `parameters` (papermill injects after it; `nbdev_clean` must keep the tag:"
    " settings.ini `allowed_cell_metadata_keys = tags`), and a kernelspec with its language (papermill -p needs it)."
    assert sorted(p.stem for p in NB_DIR.glob("*.ipynb")) == sorted(NOTEBOOKS)
    assert (NB_DIR/".notest").exists()                      # nbdev_test skips these; this file runs them
    for name in NOTEBOOKS:
        nb = json.loads((NB_DIR/f"{name}.ipynb").read_text())
        tagged = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
        assert len(tagged) == 1 and tagged[0]["cell_type"] == "code", name
        assert nb["metadata"]["kernelspec"]["language"] == "python", name
        assert not any("default_exp" in "".join(c["source"]) for c in nb["cells"]), name   # they export nothing


def test_overlap_eval(tmp_path, monkeypatch):
    study = run_nb("overlap_eval", dict(run_id="box"), tmp_path, monkeypatch)
    run = study/"box"
    m = check_eval_outputs(run, ["ground-truth", "perturbed"])
    gt_col = [r[1] for r in rows(run/"tables"/"eval_bbox.csv")[1:]]
    assert gt_col == ["100.00, 100.00"] * 3                     # the ground truth as detector is perfect on every split
    assert 0 < m["models"]["perturbed"]["segm"]["all"]["AP"] < 1
    for f in ("ground-truth", "perturbed"): check_results(run/"predictions"/f"{f}.json")
    assert {r["category_id"] for r in check_results(run/"predictions"/"perturbed.json")} == {1}
    summ = rows(run/"tables"/"overlap_summary.csv")
    assert summ[0] == ["image_id", "file_name", "n_inst", "n_crowd", "n_box_ov", "n_mask_ov"] and len(summ) == 1 + 42
    assert json.loads((run/"params.json").read_text())["params"]["criterion"] == "bbox"
    # another overlap criterion gives other splits
    run2 = run_nb("overlap_eval", dict(run_id="mask", criterion="mask", iou_types=["segm"]), tmp_path, monkeypatch)/"mask"
    m2 = json.loads((run2/"metrics.json").read_text())
    assert m2["n_instances"]["all"] == m["n_instances"]["all"]
    assert m2["n_instances"]["only_overlap"] < m["n_instances"]["only_overlap"]   # shared pixels are rarer than touching boxes
    assert not (run2/"tables"/"eval_bbox.csv").exists() and (run2/"tables"/"eval_segm.csv").exists()


def test_similarity_metrics(tmp_path, monkeypatch):
    study = run_nb("similarity_metrics", dict(size=96, run_id="all"), tmp_path, monkeypatch)
    run = study/"all"
    t = rows(run/"tables"/"similarity_measures.csv")
    assert t[0] == ["measure", "higher_is_similar", "n_same", "n_diff", "mean_same", "mean_diff", "auc", "overlap", "d_prime"]
    assert [r[0] for r in t[1:]] == ["cosine", "dot", "euclidean", "manhattan", "pearson"]
    for r in t[1:]:
        assert int(r[2]) > 0 and int(r[3]) > 0 and 0 <= float(r[6]) <= 1 and 0 <= float(r[7]) <= 1
    assert (run/"tables"/"similarity_measures.md").read_text().startswith("| measure |")
    check_png(run/"figures"/"similarity_histograms.png"); check_png(run/"figures"/"similarity_separability.png")
    assert (run/"features.pt").exists()
    run2 = run_nb("similarity_metrics", dict(size=96, measures=["cosine", "euclidean"], run_id="two"), tmp_path, monkeypatch)/"two"
    t2 = rows(run2/"tables"/"similarity_measures.csv")
    assert [r[0] for r in t2[1:]] == ["cosine", "euclidean"] and t2[1] == t[1]    # same features, fewer measures


def test_correspondences(tmp_path, monkeypatch):
    val = sample_dataset("coco_val_mini").images
    q = [str(val/"000000463730.jpg"), str(val/"000000303818.jpg")]
    run = run_nb("correspondences", dict(queries=q, size=160, k=3, ks=[1, 3], run_id="k3"), tmp_path, monkeypatch)/"k3"
    t = rows(run/"tables"/"correspondences.csv")
    assert t[0] == ["query", "k", "fg_prototype", "fg_query", "pairs", "mean_sim"]
    assert [(r[0], int(r[1])) for r in t[1:]] == [(Path(p).name, k) for p in q for k in (1, 3)]
    for a, b in zip(t[1::2], t[2::2]): assert 0 < int(a[4]) < int(b[4])     # relaxing adds pairs
    pairs = json.loads((run/"correspondences.json").read_text())
    assert [p["query"] for p in pairs] == q and all(p["k"] == 3 for p in pairs)
    for p in pairs:
        assert len(p["idx_prototype"]) == len(p["idx_query"]) == len(p["sim"]) == len(p["xy_query"]) > 0
        assert p["sim"] == sorted(p["sim"], reverse=True)
    for p in q: check_png(run/"figures"/f"correspondences_{Path(p).stem}.png", 200, 200)
    run1 = run_nb("correspondences", dict(queries=q[:1], size=160, k=1, ks=[1], run_id="k1"), tmp_path, monkeypatch)/"k1"
    p1 = json.loads((run1/"correspondences.json").read_text())[0]
    assert len(p1["sim"]) == int(t[1][4]) < len(pairs[0]["sim"])             # k = 1: plain best buddies, fewer pairs
    assert set(zip(p1["idx_prototype"], p1["idx_query"])) <= set(zip(pairs[0]["idx_prototype"], pairs[0]["idx_query"]))


def test_maskcut_demo(tmp_path, monkeypatch):
    val = sample_dataset("coco_val_mini").images
    ims = [str(val/"000000153299.jpg"), str(val/"000000143931.jpg")]
    counts = {}
    for n in (1, 3):
        run = run_nb("maskcut_demo", dict(images=ims, N=n, fixed_size=160, run_id=f"N{n}"), tmp_path, monkeypatch)/f"N{n}"
        t = rows(run/"tables"/"timings.csv")
        assert t[0] == ["image", "width", "height", "masks", "resize_s", "features_s", "ncut_s", "crf_s", "total_s", "notes"]
        assert [r[0] for r in t[1:]] == [Path(p).name for p in ims] + ["mean"]
        assert all(float(x) >= 0 for r in t[1:] for x in r[4:9])
        d = read_coco(run/"labels"/"maskcut.json")
        assert d["info"]["maskcut"]["N"] == n and len(d["images"]) == 2
        per_img = [sum(a["image_id"] == im["id"] for a in d["annotations"]) for im in d["images"]]
        assert per_img == [int(r[3]) for r in t[1:3]] and max(per_img) <= n
        counts[n] = len(d["annotations"])
        for p in ims:
            check_png(run/"figures"/f"maskcut_{Path(p).stem}.png", 300 + 150 * n, 100)
            check_png(run/"figures"/f"eigvecs_{Path(p).stem}.png", 150 * n, 100)
    assert counts[1] < counts[3], counts                   # more cuts, more masks (on these photos)


def _tiny(tmp_path, **kw):
    "Tiny settings shared by the detector notebooks: 2 training and 2 val images, 1 iteration at 128 px."
    tr, val = sample_dataset("coco_train_mini"), sample_dataset("coco_val_mini")
    return dict(train_images=str(subset_coco(tr.annotations, 2, tmp_path/"train2.json")), train_image_root=str(tr.images),
                val_annotations=str(val.annotations), val_images=str(val.images), val_max_images=2,
                fixed_size=128, max_iter=1, max_dets=5, batch_size=1,
                train_overrides=dict(min_sizes=[128], max_size=192, test_min_size=128, rpn_post_nms_top_n_train=100,
                                     box_batch_size_per_image=32, rpn_batch_size_per_image=32), **kw)


@pytest.mark.parametrize("N,gpus,arch", [(1, 1, "cascade"), (3, 2, "maskrcnn")])
def test_maskcut_filter(N, gpus, arch, tmp_path, monkeypatch):
    # gpus = 2 on a CPU: MaskCut as two `cutler-maskcut` shard processes, training with torchrun on two (gloo) ranks
    # with N = 3 the two images' masks all overlap by box, which would leave wo-ol empty (the notebook stops then):
    # before the CRF MaskCut's masks share no pixel, so the "mask" criterion keeps some
    p = _tiny(tmp_path, N=N, gpus=gpus, arch=arch, fig1_images=2, fig1_score=0.0, run_id=f"N{N}",
              overlap_criterion="bbox" if N == 1 else "mask")
    if gpus > 1: p["batch_size"] = gpus                  # the batch is split over the ranks
    run = run_nb("maskcut_filter", p, tmp_path, monkeypatch)/f"N{N}"
    sets = ["all", "wo-ol", "maskcut-filter"]
    for name in ("table1_box", "table2_segm"):
        check_eval_table(run/"tables"/f"{name}.csv", sets)
        md = (run/"tables"/f"{name}.md").read_text()
        assert md.startswith("| Eval dataset | all | wo-ol | maskcut-filter |") and f"Table {name[5]}:" in md
    m = check_eval_outputs(run, [f"MaskCut N={N}", *sets])
    assert m["n_images"] == 2
    # pseudo-labels: valid COCO files; N bounds the masks per image
    pl = read_coco(run/"labels"/"maskcut_train.json")
    assert pl["info"]["maskcut"]["N"] == N and len(pl["images"]) == 2 and pl["annotations"]
    per_img = [sum(a["image_id"] == im["id"] for a in pl["annotations"]) for im in pl["images"]]
    assert max(per_img) <= N and (N == 1 or max(per_img) > 1), per_img    # N = 3 finds more than one object somewhere
    wo = read_coco(run/"labels"/"train_wo-ol.json"); kept = read_coco(run/"labels"/"train_maskcut-filter.json")
    removed = read_coco(run/"labels"/"train_maskcut-filter_removed.json")
    assert len(wo["annotations"]) <= len(pl["annotations"])
    assert len(kept["annotations"]) + len(removed["annotations"]) == len(pl["annotations"])
    read_coco(run/"labels"/"maskcut_val.json"); read_coco(run/"labels"/"val_gt.json")
    for f in ("train_all", "val_all", "val_wo-ol", "val_maskcut-filter"): check_results(run/"predictions"/f"{f}.json")
    ts = rows(run/"tables"/"training_sets.csv")
    assert ts[0] == ["training set", "images", "instances", "images with instances"]
    assert [(r[0], int(r[2])) for r in ts[1:]] == [("all", len(pl["annotations"])), ("wo-ol", len(wo["annotations"])),
                                                    ("maskcut-filter", len(kept["annotations"]))]
    if gpus > 1:
        assert all((run/"labels"/f"maskcut_{w}.{i}-of-2.json").exists() for w in ("train", "val") for i in range(2))
        assert json.loads((run/"models"/"all"/"train_config.json").read_text())["config"]["world_size"] == 2
    for s in sets:
        assert (run/"models"/s/"checkpoints"/"iter_0000001.pth").exists()
        assert json.loads((run/"models"/s/"train_config.json").read_text())["config"]["arch"] == arch
        check_png(run/"models"/s/"figures"/"loss_curve.png")
    check_png(run/"figures"/"fig1_maskcut_vs_detector.png", 800, 300)
    summ = json.loads((run/"summary.json").read_text())
    assert summ["pseudo_labels"]["train"] == len(pl["annotations"]) and set(summ["training_sets"]) == set(sets)
    assert json.loads((run/"params.json").read_text())["params"]["N"] == N


def test_maskcut_filter_stops_on_empty_set(tmp_path, monkeypatch):
    "A filter that keeps nothing (no detection scores 1.01) stops the study with a message, before training on nothing."
    tr = sample_dataset("coco_train_mini")
    labels = subset_coco(tr.annotations, 2, tmp_path/"labels2.json")
    p = _tiny(tmp_path, maskcut_labels=str(labels), filter_score=1.01, run_id="empty")
    with pytest.raises(papermill.PapermillExecutionError, match="the MaskCut filter kept none of the"):
        run_nb("maskcut_filter", p, tmp_path, monkeypatch)
    run = tmp_path/"outputs"/"maskcut_filter"/"empty"
    assert (run/"models"/"all"/"checkpoints"/"iter_0000001.pth").exists() and not (run/"models"/"maskcut-filter").exists()


def test_self_training(tmp_path, monkeypatch):
    # one self-training round: detector 0 (DropLoss), merge at score 0 (every prediction of the untrained detector enters,
    # so the labels must change), detector 1 (no DropLoss, from detector 0's weights)
    run = run_nb("self_training", _tiny(tmp_path, rounds=1, score_thresholds=[0.0], arch="maskrcnn", run_id="r1"), tmp_path, monkeypatch)/"r1"
    labels = [read_coco(run/"labels"/f"round_{k}.json") for k in range(2)]
    assert len(labels[1]["annotations"]) > len(labels[0]["annotations"])
    assert any(a.get("source") == "pred" for a in labels[1]["annotations"])
    st = rows(run/"tables"/"selftrain.csv")
    assert [int(r[0]) for r in st[1:]] == [0, 1] and "n_labels_out" in st[0] and [r[3] for r in st[1:]] == ["True", "False"]
    check_results(run/"predictions"/"round_0.json")
    for k in (0, 1): check_results(run/"predictions"/f"val_round_{k}.json")
    check_eval_outputs(run, ["MaskCut", "detector 0", "detector 1"])
    ap = rows(run/"tables"/"ap_per_round.csv")
    assert ap[0][:2] == ["round", "model"] and len(ap[0]) == 2 + 2 * 3 and [r[1] for r in ap[1:]] == ["MaskCut", "detector 0", "detector 1"]
    check_png(run/"figures"/"ap_per_round.png")
    summ = json.loads((run/"summary.json").read_text())
    assert summ["labels"] == {f"round_{k}": len(labels[k]["annotations"]) for k in range(2)}
    assert json.loads((run/"notebook_params.json").read_text())["rounds"] == 1
