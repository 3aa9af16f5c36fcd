"End-to-end tests of cutler-train / cutler-predict: the CLIs on the bundled sample, and a 2-rank gloo DDP run on CPU."
import json, os, shutil, subprocess, sys, contextlib, io
from pathlib import Path
import pytest

BIN = Path(sys.executable).parent
# tiny images and few proposals: Mask R-CNN R50 on a shared CPU
TINY = json.dumps(dict(min_sizes=[128], max_size=192, test_min_size=128, rpn_post_nms_top_n_train=100,
                       rpn_pre_nms_top_n_train=200, box_batch_size_per_image=32, rpn_batch_size_per_image=64))

def _env(threads=2):
    return dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS=str(threads), MPLBACKEND="Agg", PYTHONWARNINGS="ignore")

def _run(cmd, env, timeout=600):
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=env, timeout=timeout)
    assert r.returncode == 0, f"{cmd[0]} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-5000:]}"
    return r

@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    "Two images of coco_train_mini with their ground truth as pseudo-labels."
    from cutler_nb.data import sample_dataset, read_coco, write_coco
    s = sample_dataset("coco_train_mini"); d = read_coco(s.annotations)
    keep = [im["id"] for im in sorted(d["images"], key=lambda i: i["id"])[:2]]
    d["images"] = [im for im in d["images"] if im["id"] in keep]
    d["annotations"] = [a for a in d["annotations"] if a["image_id"] in keep]
    p = tmp_path_factory.mktemp("data")/"labels.json"; write_coco(d, p)
    return p, s.images

def test_train_and_predict_cli(sample, tmp_path):
    ann, root = sample
    out = tmp_path/"run"
    r = _run([BIN/"cutler-train", ann, root, out, "--max_iter", 1, "--device", "cpu", "--overrides", TINY], _env())
    ck = out/"checkpoints"/"iter_0000001.pth"
    assert ck.exists() and str(ck) in r.stdout
    assert (out/"tables"/"metrics.csv").read_text().count("\n") == 2   # header + 1 row
    pred = tmp_path/"pred.json"
    _run([BIN/"cutler-predict", ck, root, pred, "--ann_file", ann, "--max_dets", 3, "--device", "cpu"], _env())
    from pycocotools.coco import COCO
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(ann)); dt = gt.loadRes(str(pred))
    res = json.loads(pred.read_text())
    assert len(res) <= 6 and {r["image_id"] for r in res} <= set(gt.getImgIds())
    for r in res:
        im = gt.imgs[r["image_id"]]; assert r["segmentation"]["size"] == [im["height"], im["width"]]

def test_ddp_gloo_two_ranks(sample, tmp_path):
    "torchrun, 2 CPU ranks (gloo), 2 iterations of 1 image per rank; checkpoint and metrics written once, by rank 0."
    ann, root = sample
    out = tmp_path/"ddp"
    _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", 2, "--no-python",
          BIN/"cutler-train", ann, root, out, "--max_iter", 2, "--batch_size", 2, "--checkpoint_every", 1,
          "--device", "cpu", "--overrides", TINY], _env(threads=1))
    import torch
    ck = torch.load(out/"checkpoints"/"last.pth", map_location="cpu", weights_only=True)
    assert ck["iter"] == 2 and ck["train_config"]["world_size"] == 2
    assert not any(k.startswith("module.") for k in ck["model"])   # the unwrapped model is saved
    rows = (out/"tables"/"metrics.csv").read_text().strip().splitlines()
    assert len(rows) == 3 and rows[-1].startswith("2,")
    assert sorted(p.name for p in (out/"checkpoints").glob("iter_*.pth")) == ["iter_0000001.pth", "iter_0000002.pth"]
