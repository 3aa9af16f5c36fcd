"""CUDA correctness: the GPU paths give the CPU reference's answers. Skipped where PyTorch sees no GPU
(this workplace's CI); run on a GPU with `pytest tests -k cuda` (see benchmarks/gpu_check.sh)."""
import os, json
import numpy as np
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

from cutler_nb.data import sample_dataset, list_images, load_image, mask_iou, read_coco
from cutler_nb.features import load_backbone, preprocess, extract_features


def _mean_best_iou(ref, got):
    "Mean over reference masks of the best IoU with a mask of `got` (1 when both lists are empty)."
    if not ref and not got: return 1.0
    if not ref or not got: return 0.0
    return float(np.mean([max(mask_iou(r, g) for g in got) for r in ref]))


def test_cuda_maskcut_torch_solver_matches_dense_cpu():
    "Batched torch solver on the GPU vs the dense reference on the CPU: mean mask IoU >= 0.99 (classic backbone)."
    imgs = [load_image(p) for p in list_images(sample_dataset("coco_val_mini").images)[:8]]
    from cutler_nb.pseudolabel import maskcut_batch
    ref = maskcut_batch(imgs, "classic", solver="dense", device="cpu", crf=False, fixed_size=320)
    got = maskcut_batch(imgs, "classic", solver="torch", device="cuda", crf=False, fixed_size=320, batch_size=8)
    ious = [_mean_best_iou(r, g) for r, g in zip(ref, got)]
    assert np.mean(ious) >= 0.99, ious


def test_cuda_pipelined_maskcut_with_crf_matches_cpu():
    "The pipeline on CUDA (prefetch threads, CRF in 2 forked processes after CUDA is initialised) = serial CPU masks."
    imgs = [load_image(p) for p in list_images(sample_dataset("coco_val_mini").images)[:6]]
    from cutler_nb.pseudolabel import maskcut_batch
    ref = maskcut_batch(imgs, "classic", solver="dense", device="cpu", fixed_size=240, batch_size=1, prefetch=0, crf_workers=0)
    torch.zeros(1, device="cuda")
    got = maskcut_batch(imgs, "classic", solver="torch", device="cuda", fixed_size=240, batch_size=4, prefetch=2, crf_workers=2)
    ious = [_mean_best_iou(r, g) for r, g in zip(ref, got)]
    assert np.mean(ious) >= 0.99, ious


def test_cuda_vit_features_match_cpu():
    "Random-init ViT-S/16 with the same weights: CUDA float32 keys equal the CPU's; fp16 stays close."
    bb_cpu = load_backbone("dino_vits16", pretrained=False, device="cpu")
    bb_gpu = load_backbone("dino_vits16", pretrained=False, device="cpu").to("cuda")
    bb_gpu.load_state_dict(bb_cpu.state_dict())
    imgs = [load_image(p) for p in list_images(sample_dataset("coco_val_mini").images)[:8]]
    x = torch.stack([preprocess(im, 480) for im in imgs])
    fc = extract_features(bb_cpu, x); fg = extract_features(bb_gpu, x.cuda()).cpu()
    assert torch.allclose(fc, fg, rtol=1e-3, atol=1e-3 * fc.abs().max().item())
    f16 = extract_features(bb_gpu, x.cuda(), dtype=torch.float16).cpu()
    rel = float((f16 - fc).norm() / fc.norm()); print("fp16 relative L2 difference of the keys:", rel)
    assert rel < 0.01


def test_cuda_drop_loss_matches_cpu():
    from cutler_nb.detector import drop_loss_weights, drop_loss
    g = torch.Generator().manual_seed(0)
    boxes = torch.rand(64, 2, generator=g) * 50; boxes = torch.cat([boxes, boxes + 5 + torch.rand(64, 2, generator=g) * 30], 1)
    gt = torch.tensor([[0., 0., 20., 20.], [30., 30., 60., 70.]])
    logits = torch.randn(64, 2, generator=g); reg = torch.randn(64, 8, generator=g)
    labels = [torch.randint(0, 2, (64,), generator=g)]; targets = [torch.randn(64, 4, generator=g)]
    w_cpu = drop_loss_weights(boxes, gt); w_gpu = drop_loss_weights(boxes.cuda(), gt.cuda())
    assert torch.equal(w_cpu, w_gpu.cpu())
    lc = drop_loss(logits, reg, labels, targets, w_cpu)
    lg = drop_loss(logits.cuda(), reg.cuda(), [l.cuda() for l in labels], [t.cuda() for t in targets], w_gpu)
    for u, v in zip(lc, lg): assert torch.allclose(u, v.cpu(), atol=1e-5)


def test_cuda_train_amp_resume_and_predict(tmp_path):
    "A few AMP iterations on the GPU, resumed, then predict writes a results file pycocotools loads."
    from cutler_nb.train import train, predict
    from pycocotools.coco import COCO
    s = sample_dataset("coco_train_mini")
    ck = train(s.annotations, s.images, tmp_path/"run", preset="cpu-smoke", max_iter=3, batch_size=2, device="cuda",
               amp=True, checkpoint_every=2)
    ck2 = train(s.annotations, s.images, tmp_path/"run", preset="cpu-smoke", max_iter=5, batch_size=2, device="cuda",
                amp=True, checkpoint_every=2)
    assert ck2 != ck and torch.load(ck2, map_location="cpu", weights_only=False)["iter"] >= 5
    out = predict(ck2, s.images, tmp_path/"pred.json", ann_file=s.annotations, device="cuda")
    res = json.loads(out.read_text()); assert isinstance(res, list)
    if res: COCO(str(s.annotations)).loadRes(str(out))
