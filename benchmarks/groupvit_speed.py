"""Speed of one plain GroupViT forward (image side, no text) at a square input: images/s.

    python benchmarks/groupvit_speed.py                                   # CPU, tiny + full-size config, 448²
    python benchmarks/groupvit_speed.py --device cuda --batch_size 32 --iters 20 --dtype fp16

Both models are RANDOM-INIT (the tiny test config and the released architecture, `GroupViTConfig()`: ViT-S/16
width 384, depths 6/3/3, 64 then 8 group tokens, 55M parameters): speed does not depend on the weights, and
no weights are needed. The forward is `cutler_nb.groupvit.GroupViT.forward` (all assignments, Ŝ¹ hook,
projections) under `torch.inference_mode`. The first `--warmup` iterations are left out. With `--zs_images N`
(default 2) it also times the thesis's zero-shot inference, `cutler_nb.semseg.segment_image` (short side 448, sliding
448 crops, stride 224, COCO-Object's 80 prompts; text embeddings computed once, not timed) on N bundled photos.
Prints a small table and one JSON line; with `--out`, writes it there too.
"""
import json, time, warnings
from pathlib import Path
from fastcore.script import call_parse

def _time_forward(model, x, iters:int, warmup:int, dev) -> float:
    import torch
    with torch.inference_mode():
        for i in range(warmup + iters):
            if i == warmup:
                if dev.type == "cuda": torch.cuda.synchronize(dev)
                t0 = time.perf_counter()
            model(x)
        if dev.type == "cuda": torch.cuda.synchronize(dev)
    return (time.perf_counter() - t0) / iters

def _time_zero_shot(model, n:int, dev) -> dict:
    import torch
    from cutler_nb.data import load_image
    from cutler_nb.semseg import DATASETS, SIMPLE_TEMPLATES, class_text_embeddings, segment_image, seg_dataset
    spec, ds = DATASETS["coco_object"], seg_dataset("coco_object_mini", limit=n)
    imgs = [ds[i][0] for i in range(len(ds))]
    with torch.inference_mode():
        z = class_text_embeddings(model, spec.prompt_classes, SIMPLE_TEMPLATES)
        segment_image(model, imgs[0], spec, text_embeds=z)                      # warm-up
        if dev.type == "cuda": torch.cuda.synchronize(dev)
        t0 = time.perf_counter()
        for im in imgs: segment_image(model, im, spec, text_embeds=z)
        if dev.type == "cuda": torch.cuda.synchronize(dev)
    s = (time.perf_counter() - t0) / len(imgs)
    return dict(zero_shot_images=len(imgs), zero_shot_s_per_image=round(s, 3), zero_shot_images_per_s=round(1 / s, 3))

@call_parse
def main(device:str="cpu", # "cpu", "cuda", "cuda:1"
         size:int=448, # input side in pixels (a multiple of 16)
         batch_size:int=1, # images per forward
         iters:int=5, # timed forwards per model
         warmup:int=2, # untimed forwards first
         dtype:str="fp32", # fp32, fp16 or bf16 (half precision: CUDA only)
         models:str="tiny,full", # which configs: tiny, full (both random-init)
         threads:int=0, # torch CPU threads (0: torch's default)
         zs_images:int=2, # bundled photos for the zero-shot sliding-window column (0: skip)
         out:str=None, # optional JSON file for the results
        ):
    "Images/s of a plain GroupViT forward at `size`² for the tiny and the full-size random-init configs."
    import torch
    from transformers import GroupViTConfig
    from cutler_nb.core import get_device
    from cutler_nb.groupvit import tiny_groupvit, load_groupvit
    if size % 16: raise SystemExit(f"groupvit_speed: --size must be a multiple of 16, got {size}")
    dt = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}.get(dtype)
    if dt is None: raise SystemExit(f"groupvit_speed: --dtype must be fp32, fp16 or bf16, got {dtype!r}")
    dev = get_device(device)
    if dt != torch.float32 and dev.type != "cuda": raise SystemExit("groupvit_speed: half precision needs --device cuda")
    if threads: torch.set_num_threads(threads)
    torch.manual_seed(0)
    rows = []
    for name in [m.strip() for m in models.split(",") if m.strip()]:
        if name == "tiny": model = tiny_groupvit(0)
        elif name == "full":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")   # the random-weights warning: this is a speed run, labelled random below
                model = load_groupvit("nvidia/groupvit-gcc-yfcc", pretrained=False, device="cpu", config=GroupViTConfig())
        else: raise SystemExit(f"groupvit_speed: unknown model {name!r} (tiny, full)")
        model = model.to(dev, dt).eval()
        x = torch.randn(batch_size, 3, size, size, device=dev, dtype=dt)
        s = _time_forward(model, x, iters, warmup, dev)
        row = dict(model=f"{name} (random init)", params_M=round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
                   size=size, batch_size=batch_size, dtype=dtype, s_per_forward=round(s, 4), images_per_s=round(batch_size / s, 2))
        if zs_images: row.update(_time_zero_shot(model, zs_images, dev))
        rows.append(row)
        del model
    res = dict(device=torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)",
               torch=torch.__version__, rows=rows,
               note="random weights: speed only; zero-shot = cutler_nb.semseg.segment_image on bundled COCO photos (sliding 448 crops)")
    print(f"GroupViT forward at {size}², {res['device']} (random weights: speed only)")
    print(f"{'model':<22}{'params M':>10}{'batch':>7}{'dtype':>7}{'s/forward':>11}{'images/s':>10}{'zero-shot images/s':>20}")
    for r in rows: print(f"{r['model']:<22}{r['params_M']:>10}{r['batch_size']:>7}{r['dtype']:>7}{r['s_per_forward']:>11}{r['images_per_s']:>10}"
                         f"{r.get('zero_shot_images_per_s', '-'):>20}")
    print(json.dumps(res))
    if out: Path(out).write_text(json.dumps(res, indent=1))
    return res
