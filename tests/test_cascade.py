"Cascade Mask R-CNN end to end on CPU: 2 training iterations through `cutler_nb.train.train(arch='cascade')`, predict, class-agnostic evaluate."
import json, os
from pathlib import Path
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1"); os.environ.setdefault("CUTLER_NB_OFFLINE", "1")
# tiny images and few proposals: three R50 box stages on a shared CPU
TINY = dict(min_sizes=(160,), max_size=224, test_min_size=160, rpn_post_nms_top_n_train=100, rpn_pre_nms_top_n_train=200,
            rpn_pre_nms_top_n_test=100, rpn_post_nms_top_n_test=50, box_batch_size_per_image=32, rpn_batch_size_per_image=64)

@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    "Three images of coco_train_mini with their ground truth as pseudo-labels."
    from cutler_nb.data import sample_dataset, read_coco, write_coco
    s = sample_dataset("coco_train_mini"); d = read_coco(s.annotations)
    keep = {im["id"] for im in sorted(d["images"], key=lambda i: i["id"])[:3]}
    d["images"] = [im for im in d["images"] if im["id"] in keep]
    d["annotations"] = [a for a in d["annotations"] if a["image_id"] in keep]
    p = tmp_path_factory.mktemp("data")/"labels.json"; write_coco(d, p)
    return p, s.images

def test_cascade_train_predict_evaluate(sample, tmp_path):
    import torch
    from cutler_nb.train import train, predict, load_checkpoint
    from cutler_nb.evaluate import evaluate
    from cutler_nb.detector import CascadeRoIHeads
    torch.set_num_threads(2)
    ann, root = sample
    ck = train(ann, root, tmp_path/"run", preset="cpu-smoke", arch="cascade", max_iter=2, batch_size=2, device="cpu",
               checkpoint_every=2, resume=False, **TINY)
    c = load_checkpoint(ck)
    assert c["build_config"]["arch"] == "cascade" and c["iter"] == 2
    assert sum(k.startswith("roi_heads.box_predictor.2.") for k in c["model"]) == 4   # three stages' predictors saved
    rows = (tmp_path/"run"/"tables"/"metrics.csv").read_text().splitlines()
    assert len(rows) == 3 and "nan" not in rows[-1].split(",")[2]               # header + 2 iterations, finite loss
    pred = predict(ck, root, tmp_path/"pred.json", ann_file=ann, device="cpu", max_dets=20)
    dets = json.loads(Path(pred).read_text())
    assert dets and all(d["category_id"] == 1 and "segmentation" in d for d in dets)
    assert len({d["image_id"] for d in dets}) == 3
    # class-agnostic COCO metrics of a 2-iteration model from random weights: only that they are computed
    from cutler_nb.evaluate import METRICS
    for t in ("bbox", "segm"):
        res = evaluate(ann, pred, iou_type=t)
        assert all(0 <= res[m] <= 1 for m in METRICS[:3]), res   # AP, AP50, AP75 are defined: the images have objects
        print(t, {m: round(res[m], 4) for m in METRICS[:3]}, "(2 iterations from random weights)")
