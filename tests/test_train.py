"End-to-end tests of cutler-train / cutler-predict: the CLIs on the bundled sample (Mask R-CNN and Cascade), exact and refused resumes, and a 2-rank gloo DDP run on CPU."
import json, os, subprocess, sys, contextlib, io
from pathlib import Path
import pytest

BIN = Path(sys.executable).parent
# tiny images and few proposals: Mask R-CNN R50 on a shared CPU; absolute steps (a fraction of max_iter moves with it)
TINY_D = dict(min_sizes=[128], max_size=192, test_min_size=128, rpn_post_nms_top_n_train=100, rpn_pre_nms_top_n_train=200,
              box_batch_size_per_image=32, rpn_batch_size_per_image=64, steps=[1000])
TINY = json.dumps(TINY_D)

def _env(threads=2):
    return dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS=str(threads), MPLBACKEND="Agg", PYTHONWARNINGS="ignore")

def _run(cmd, env, timeout=600, rc=0):
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=env, timeout=timeout)
    assert r.returncode == rc, f"{cmd[0]} exited {r.returncode}, expected {rc}:\n{r.stdout[-3000:]}\n{r.stderr[-5000:]}"
    return r

@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    "Three images of coco_train_mini with their ground truth as pseudo-labels; the third has none (left out of training)."
    from cutler_nb.data import sample_dataset, read_coco, write_coco
    s = sample_dataset("coco_train_mini"); d = read_coco(s.annotations)
    keep = [im["id"] for im in sorted(d["images"], key=lambda i: i["id"])[:3]]
    d["images"] = [im for im in d["images"] if im["id"] in keep]
    d["annotations"] = [a for a in d["annotations"] if a["image_id"] in keep[:2]]
    p = tmp_path_factory.mktemp("data")/"labels.json"; write_coco(d, p)
    return p, s.images

def test_train_and_predict_cli(sample, tmp_path):
    ann, root = sample
    out = tmp_path/"run"
    r = _run([BIN/"cutler-train", ann, root, out, "--max_iter", 1, "--device", "cpu", "--drop_loss", "False", "--overrides", TINY], _env())
    ck = out/"checkpoints"/"iter_0000001.pth"
    assert ck.exists() and r.stdout.strip().splitlines()[-1] == str(ck)
    assert "cutler-train: maskrcnn, 1 iterations on 2 images (1 without labels left out)" in r.stdout, r.stdout
    assert (out/"tables"/"metrics.csv").read_text().count("\n") == 2   # header + 1 row
    import torch
    assert torch.load(ck, map_location="cpu", weights_only=True)["build_config"]["drop_loss"] is False   # --drop_loss False honoured
    pred = tmp_path/"pred.json"
    r = _run([BIN/"cutler-predict", ck, root, pred, "--ann_file", ann, "--max_dets", 3, "--device", "cpu"], _env())
    assert r.stdout.startswith("cutler-predict: ") and r.stdout.strip().endswith(str(pred))
    from pycocotools.coco import COCO
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(ann)); dt = gt.loadRes(str(pred))
    res = json.loads(pred.read_text())
    assert len(res) <= 9 and {r["image_id"] for r in res} <= set(gt.getImgIds())
    for r in res:
        im = gt.imgs[r["image_id"]]; assert r["segmentation"]["size"] == [im["height"], im["width"]]

def test_resume_refuses_other_inputs_and_settings(sample, tmp_path):
    "A run folder is resumed only with the same annotation content, image folder and settings; else exit 1, one line, folder untouched."
    from cutler_nb.data import read_coco, write_coco
    ann, root = sample
    out = tmp_path/"run"
    _run([BIN/"cutler-train", ann, root, out, "--max_iter", 1, "--device", "cpu", "--overrides", TINY], _env())
    cfg, last = (out/"train_config.json").read_bytes(), (out/"checkpoints"/"last.pth").stat().st_mtime_ns
    other = read_coco(ann); other["annotations"] = other["annotations"][1:]; write_coco(other, tmp_path/"other.json")
    for args, what in (([tmp_path/"other.json", root], "ann_sha1"), ([ann, root, "--lr", 0.5], "lr: 0.001 → 0.5"),
                       ([ann, root, "--seed", 3], "seed: 0 → 3"), ([ann, tmp_path, "--max_iter", 2], "image_root")):
        a = args[:2] + [out, "--device", "cpu", "--overrides", TINY] + args[2:]
        if "--max_iter" not in a: a += ["--max_iter", 2]
        r = _run([BIN/"cutler-train", *a], _env(), rc=1)
        assert what in r.stderr and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert (out/"train_config.json").read_bytes() == cfg and (out/"checkpoints"/"last.pth").stat().st_mtime_ns == last
    r = _run([BIN/"cutler-train", ann, root, out, "--max_iter", 2, "--device", "cpu", "--overrides", TINY], _env())   # same run: extended
    assert (out/"checkpoints"/"iter_0000002.pth").exists()

def test_resume_is_exact(sample, tmp_path):
    "4 iterations straight and 2 + 2 resumed give the same losses at every iteration and the same weights (CPU)."
    import torch
    from cutler_nb.train import train, load_checkpoint, _read_metrics, _LOSSES
    ann, root = sample
    kw = dict(device="cpu", batch_size=2, checkpoint_every=2, **TINY_D)
    train(ann, root, tmp_path/"a", max_iter=2, **kw); a = train(ann, root, tmp_path/"a", max_iter=4, **kw)
    b = train(ann, root, tmp_path/"b", max_iter=4, **kw)
    ra, rb = _read_metrics(tmp_path/"a/tables/metrics.csv"), _read_metrics(tmp_path/"b/tables/metrics.csv")
    assert [r["iter"] for r in ra] == [r["iter"] for r in rb] == ["1", "2", "3", "4"]
    for x, y in zip(ra, rb):
        for k in ("lr", "loss", *_LOSSES): assert float(x[k]) == pytest.approx(float(y[k]), rel=1e-6, abs=1e-7), (x["iter"], k)
    wa, wb = load_checkpoint(a)["model"], load_checkpoint(b)["model"]
    assert all(torch.allclose(wa[k].float(), wb[k].float(), atol=1e-6) for k in wa)

def test_cascade_cli(sample, tmp_path):
    "--arch cascade: one iteration, a cascade checkpoint, predictions; --arch maskrcnn at predict time is refused."
    ann, root = sample
    out = tmp_path/"casc"
    r = _run([BIN/"cutler-train", ann, root, out, "--arch", "cascade", "--max_iter", 1, "--device", "cpu", "--overrides", TINY], _env())
    assert "cutler-train: cascade, 1 iterations" in r.stdout, r.stdout
    ck = out/"checkpoints"/"iter_0000001.pth"
    import torch
    assert torch.load(ck, map_location="cpu", weights_only=True)["build_config"]["arch"] == "cascade"
    pred = tmp_path/"pred.json"
    _run([BIN/"cutler-predict", ck, root, pred, "--ann_file", ann, "--max_dets", 3, "--device", "cpu", "--arch", "cascade"], _env())
    assert isinstance(json.loads(pred.read_text()), list)
    r = _run([BIN/"cutler-predict", ck, root, tmp_path/"p2.json", "--ann_file", ann, "--device", "cpu", "--arch", "maskrcnn"], _env(), rc=1)
    assert "is a cascade detector, not maskrcnn" in r.stderr

def test_clip_grad_per_param():
    "Two parameters with gradient norms 5 and 0.5: per tensor, the first is scaled to norm 1, the second untouched."
    import torch
    from cutler_nb.train import clip_grad_per_param
    a, b = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(3))
    a.grad, b.grad = torch.tensor([3., 4.]), torch.tensor([0.3, 0.4, 0.])
    clip_grad_per_param([a, b], 1.0)
    assert torch.allclose(a.grad, torch.tensor([0.6, 0.8]), atol=1e-5) and torch.equal(b.grad, torch.tensor([0.3, 0.4, 0.]))

def test_ddp_gloo_two_ranks(sample, tmp_path):
    "torchrun (built by train.torchrun_command), 2 CPU ranks (gloo), 2 iterations of 1 image per rank; checkpoint and metrics written once, by rank 0."
    from cutler_nb.train import torchrun_command
    ann, root = sample
    out = tmp_path/"ddp"
    _run(torchrun_command(2, ann, root, out, max_iter=2, batch_size=2, checkpoint_every=1, device="cpu", **TINY_D), _env(threads=1))
    import torch
    ck = torch.load(out/"checkpoints"/"last.pth", map_location="cpu", weights_only=True)
    assert ck["iter"] == 2 and ck["train_config"]["world_size"] == 2
    assert not any(k.startswith("module.") for k in ck["model"])   # the unwrapped model is saved
    rows = (out/"tables"/"metrics.csv").read_text().strip().splitlines()
    assert len(rows) == 3 and rows[-1].startswith("2,")
    assert sorted(p.name for p in (out/"checkpoints").glob("iter_*.pth")) == ["iter_0000001.pth", "iter_0000002.pth"]
