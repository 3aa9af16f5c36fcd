"""MaskCut speed: the normalized-cut solvers and the whole pipeline, side by side in one run.

Prints ratios, not absolute goals: the machine may be shared, so every configuration is timed in the same
process on the same images, and the ratio to the reference is what counts.

1. **NCut stage** at the working size (ViT-B/8 at 480² -> 3,600 nodes): the same affinity graphs solved by
   `dense` (scipy generalized eigh, the official code's solver), `arpack` and `torch`; time per graph, ratio to
   dense, and whether the bipartitions agree.
2. **CRF stage**: three masks per image refined by a fresh CRF each (the official code) and by `crf_refine_all`,
   which builds the image's CRF lattice once; time per image, ratio, and whether the masks are identical.
3. **Whole pipeline** (resize -> features -> 3 cuts -> CRF -> full-size masks), images/s overall and per stage:
   the reference (dense solver, one image at a time, float32, every stage waiting for the previous one)
   against the fast configurations (arpack on CPU; batched features + batched torch solver, optionally
   bf16/fp16, on CUDA), first serial, then pipelined (`maskcut_stream`: resizing in threads, the CRF in
   processes, both overlapping the next batch's features and cuts), with the mean IoU of their masks
   against the reference's.

Examples:
    python benchmarks/maskcut_speed.py                                  # CPU, ViT-B/8 random init, 2 images
    python benchmarks/maskcut_speed.py --device cuda --images 48 --batch_size 16 --dtype fp16 --crf_workers 14 --prefetch 4
    python benchmarks/maskcut_speed.py --backbone dino_vitb8 --pretrained True  # with DINO weights available

Random weights (the default, as no DINO checkpoint ships with the package) give the same cost as trained ones;
their masks are meaningless, but agreement between solvers is still measured on them.
"""
from __future__ import annotations
import os, time
from types import SimpleNamespace
import numpy as np
import torch
from fastcore.script import call_parse, bool_arg, store_true


@call_parse
def main(device:str="auto", # auto, cpu, cuda
         backbone:str="dino_vitb8", # feature backbone (MaskCut: dino_vitb8)
         pretrained:bool_arg=False, # True: load DINO weights (must be available); False: random init
         weights:str=None, # explicit checkpoint path
         images:int=2, # number of bundled COCO photos to time
         fixed_size:int=480, # side of the working square
         N:int=3, # masks per image
         tau:float=0.15, # affinity threshold
         batch_size:int=8, # images per batch in the fast configurations
         dtype:str="fp32", # fp32, bf16 or fp16 features for the fast configurations (CUDA only)
         solvers:str="dense,arpack,torch", # solvers timed in the NCut stage
         graphs:int=2, # graphs timed per solver in the NCut stage
         crf:bool_arg=True, # include the dense CRF
         crf_workers:int=1, # CRF processes of the pipelined configuration (0: in-process)
         prefetch:int=2, # threads loading/resizing ahead in the pipelined configuration
         no_reference:store_true=False, # skip the reference pipeline (e.g. on a GPU when timed before)
         ref_images:int=None, # time the reference on only the first k images (it is slow); ratios use per-image times
         threads:int=0, # torch intra-op threads (0: torch's default)
        ):
    "MaskCut speed: the normalized-cut solvers and the whole pipeline, side by side in one run."
    a = SimpleNamespace(**locals())
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if a.threads: torch.set_num_threads(a.threads)

    from cutler_nb.core import get_device, torch_dtype
    from cutler_nb.data import sample_dataset, list_images, load_image, mask_iou
    from cutler_nb.features import load_backbone, preprocess, extract_features
    from cutler_nb.ncut import above_tau, second_smallest_eigvec, second_smallest_eigvec_batch, bipartition, EPS
    from cutler_nb.maskcut import resize_square, working_size
    from cutler_nb.pseudolabel import maskcut_batch

    dev = get_device(a.device); crf = a.crf
    dtype = torch_dtype(a.dtype)
    pretrained = a.pretrained
    bb = load_backbone(a.backbone, pretrained=pretrained, weights=a.weights, device=dev)
    paths = list_images(sample_dataset("coco_val_mini").images)[:a.images]
    imgs = [load_image(p) for p in paths]
    S = working_size(a.fixed_size, bb.patch_size)
    sync = (lambda: torch.cuda.synchronize()) if dev.type == "cuda" else (lambda: None)
    gpu = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "-"
    print(f"device {dev} ({gpu}), torch threads {torch.get_num_threads()}, backbone {a.backbone} "
          f"({'DINO weights' if pretrained else 'random init'}), {S}x{S} -> {(S // bb.patch_size) ** 2} nodes, {len(imgs)} images")

    # ---- 1. NCut stage on identical graphs ----
    x = torch.stack([preprocess(resize_square(im, S), size=None) for im in imgs[:a.graphs]])
    feats = extract_features(bb, x, batch_size=a.batch_size)
    up = above_tau(feats, a.tau)
    graphs = [np.where(u.cpu().numpy(), 1.0, EPS) for u in up]
    print(f"\n[NCut stage] {len(graphs)} graphs of {graphs[0].shape[0]} nodes (first cut of each image)")
    times, vecs = {}, {}
    for s in a.solvers.split(","):
        # one untimed solve first: lazy imports, thread pools and CUDA kernels start on first use
        if s == "torch": second_smallest_eigvec_batch(torch.where(up[:1], 1.0, EPS).to(dev), device=dev); sync()
        else: second_smallest_eigvec(graphs[0], s)
        t0 = time.perf_counter()
        if s == "torch":
            A = torch.where(up, 1.0, EPS).to(dev); sync(); t0 = time.perf_counter()
            vecs[s] = second_smallest_eigvec_batch(A, device=dev); sync()
        else: vecs[s] = [second_smallest_eigvec(g, s) for g in graphs]
        times[s] = (time.perf_counter() - t0) / len(graphs)
    ref_s = "dense" if "dense" in times else next(iter(times))
    for s, t in times.items():
        agree = np.mean([(bipartition(v) == bipartition(r)).mean() if v is not None and r is not None else float(v is r)
                         for v, r in zip(vecs[s], vecs[ref_s])])
        print(f"  {s:7s} {t:8.3f} s/graph   {times[ref_s] / t:7.1f}x {ref_s}   bipartition agreement {agree:.4f}")

    # ---- 2. CRF stage: a fresh CRF per mask (the official crf.py) against one lattice per image ----
    if crf:
        from cutler_nb.maskcut import crf_refine, crf_refine_all, CRF_PARAMS
        def separate(image, mask): return crf_refine(image, mask, **CRF_PARAMS)   # its own lattice for each mask
        g = S // bb.patch_size; rng = np.random.default_rng(0)
        work = [(resize_square(im, S), [rng.random((g, g)) > t for t in (0.3, 0.6, 0.9)]) for im in imgs[:a.graphs]]
        t0 = time.perf_counter(); sep = [[separate(r, m) for m in ms] for r, ms in work]; t_sep = (time.perf_counter() - t0) / len(work)
        t0 = time.perf_counter(); sh = [crf_refine_all(r, ms, **CRF_PARAMS) for r, ms in work]; t_sh = (time.perf_counter() - t0) / len(work)
        same = all((x == y).all() for u, v in zip(sep, sh) for x, y in zip(u, v))
        print(f"\n[CRF stage] 3 masks per image at {S}x{S}, {len(work)} images")
        print(f"  one CRF per mask           {t_sep:.3f} s/img\n  shared lattice             {t_sh:.3f} s/img   {t_sep / t_sh:.2f}x   identical masks: {same}")

    # ---- 3. whole pipeline ----
    def pipeline(name, ims, **kw):
        sync(); t0 = time.perf_counter()
        res = maskcut_batch(ims, bb, N=a.N, tau=a.tau, fixed_size=a.fixed_size, crf=crf, device=dev, details=True, **kw)
        sync(); wall = (time.perf_counter() - t0) / len(ims)
        st = {k: sum(r.timings[k] for r in res) / len(ims) for k in ("prepare", "features", "ncut", "crf")}
        print(f"  {name:50s} {1 / wall:7.3f} img/s  ({wall:6.3f} s/img wall; per image: resize {st['prepare']:.3f}, "
              f"features {st['features']:.3f}, ncut {st['ncut']:.3f}, crf+resize {st['crf']:.3f}; {len(ims)} images)", flush=True)
        return res, wall

    def agreement(res, ref):
        ious = [1.0 if ma is None and mb is None else 0.0 if (ma is None) != (mb is None) else mask_iou(ma, mb)
                for r0, r1 in zip(ref, res) for ma, mb in zip(r0.per_iter, r1.per_iter)]
        return float(np.mean(ious))

    print(f"\n[Pipeline] N={a.N}, CRF {'on' if crf else 'off'}")
    fast_solver = "torch" if dev.type == "cuda" else "arpack"
    configs = []
    serial = dict(prefetch=0, crf_workers=0)   # each stage waits for the one before: the reference's way
    if not a.no_reference: configs.append(("reference: dense, 1 image, fp32", dict(solver="dense", batch_size=1, ims=imgs[:a.ref_images], **serial)))
    configs.append((f"{fast_solver}, 1 image, fp32", dict(solver=fast_solver, batch_size=1, **serial)))
    configs.append((f"{fast_solver}, batch {a.batch_size}, {a.dtype}, serial", dict(solver=fast_solver, batch_size=a.batch_size, dtype=dtype, **serial)))
    if a.crf_workers > 0 or a.prefetch > 0:
        configs.append((f"{fast_solver}, batch {a.batch_size}, {a.dtype}, pipelined ({a.crf_workers} CRF proc.)",
                        dict(solver=fast_solver, batch_size=a.batch_size, dtype=dtype, crf_workers=a.crf_workers, prefetch=a.prefetch)))
    if dev.type == "cuda" and dtype is not None:
        configs.append((f"{fast_solver}, batch {a.batch_size}, fp32, pipelined", dict(solver=fast_solver, batch_size=a.batch_size,
                                                                                    crf_workers=a.crf_workers, prefetch=a.prefetch)))
    results = []
    for name, kw in configs: results.append((name, *pipeline(name, **{"ims": imgs, **kw})))
    ref_name, ref_res, ref_wall = results[0]
    print(f"\n[Ratios against '{ref_name}']")
    for name, res, wall in results[1:]:
        print(f"  {name:50s} speed-up {ref_wall / wall:6.2f}x   mean mask IoU vs reference {agreement(res, ref_res):.4f}"
              f" (on {min(len(res), len(ref_res))} images)")

