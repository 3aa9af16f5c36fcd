"""Speed and peak memory of one GroupViT fine-tuning step (thesis §5.5–5.14) at 224 and 384 px, side by side.

    python benchmarks/groupvit_train_speed.py --device cpu --batch_size 2 --iters 2 --warmup 1          # shared CPU box
    python benchmarks/groupvit_train_speed.py --device cuda --batch_size 64 --amp fp16 --iters 10 --warmup 3 --losses ge

One step is what `cutler_nb.gvit_train`'s loop does per batch: `step_losses` (forward of images and texts, contrastive +
multi-label loss, plus GE/LE/SE with `--losses`), backward through a `GradScaler`, gradient clipping and the AdamW step of
`make_optimizer`; data loading is left out (one batch of the bundled photos with synthetic captions, made once by
`build_dataset(cfg, "sample")` and `collate_captions`, is reused). The models are RANDOM-INIT: the full-size architecture
(`GroupViTConfig()`, the released one) and optionally the tiny test config; speed and memory do not depend on the weights,
and none are needed. Position embeddings are resized to each size as `build_model` does, and the trainable parts are set
with `set_trainable`: "default" is the preset's (the thesis's: both grouping blocks), "all" the whole model, or a
`+`-joined list of parts such as `gb2+img_proj`. Peak memory is the CUDA allocator peak (`torch.cuda.max_memory_allocated`)
or, on the CPU, the process's peak RSS; "step GiB" is that peak less the level before the first step (model, optimiser
and batch built: on the CPU the RSS high-water mark then, imports included), i.e. what the steps add, AdamW's moments
(made at the first step) included. Each row runs in a fresh process so that the peaks are its own. The first
`--warmup` steps are left out of the time. Next to the wall time per step, "CPU s" is the process's CPU time per step
(all its threads): on a shared machine, where other jobs stretch the wall time, it is the steadier figure. Prints a
table, the 384/224 ratios, and one JSON line (also to `--out`); exits 1 when a row failed (e.g. out of memory).
"""
import json, time, warnings
from concurrent.futures import ProcessPoolExecutor
import multiprocessing as mp
from fastcore.script import call_parse

def _peak_mem_gib(dev) -> float:
    "Peak memory of this process: CUDA allocator peak on a GPU, maximum resident set size on the CPU."
    import torch, resource
    if dev.type == "cuda": return torch.cuda.max_memory_allocated(dev) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20   # Linux: KiB

def _random_model(name:str, cfg:dict):
    "The random-init tiny or full-size GroupViT with position embeddings at cfg['size'] and cfg['parts'] trainable (as `build_model`)."
    from transformers import GroupViTConfig
    from cutler_nb.groupvit import tiny_groupvit, load_groupvit, resize_position_embeddings
    from cutler_nb.gvit_train import set_trainable
    if name == "tiny": model = tiny_groupvit(cfg["seed"])
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")   # the random-weights warning: a speed run, labelled random in every row
            model = load_groupvit("nvidia/groupvit-gcc-yfcc", pretrained=False, device="cpu", config=GroupViTConfig())
    if int(model.hf.config.vision_config.image_size) != cfg["size"]: resize_position_embeddings(model.hf, cfg["size"])
    return model, set_trainable(model, cfg["parts"])

def _batch(cfg:dict, batch_size:int) -> dict:
    "One training batch of bundled photos with synthetic captions at cfg['size'] (photos repeat when the batch is larger)."
    from cutler_nb.gvit_train import build_dataset
    from cutler_nb.captions import collate_captions
    ds = build_dataset(cfg, "sample", progress=False)
    return collate_captions([ds[i % len(ds)] for i in range(batch_size)])

def measure(name:str, size:int, trainable:str, a:dict) -> dict:
    "Time `a['iters']` training steps of one (model, size, trainable parts); run in its own process."
    import torch
    from cutler_nb.core import get_device, seed_everything
    from cutler_nb.gvit_train import resolve_config, make_optimizer, step_losses
    dev = get_device(a["device"])
    if a["threads"]: torch.set_num_threads(a["threads"])
    losses = {k: 1.0 for k in a["losses"].split(",") if k}
    parts = None if trainable == "default" else trainable.split("+")
    cfg = resolve_config(a["preset"], size=size, batch_size=a["batch_size"], amp=a["amp"] == "fp16", parts=parts, **losses)
    seed_everything(cfg["seed"])
    batch = _batch(cfg, a["batch_size"])
    model, n_train = _random_model(name, cfg)
    model = model.to(dev).train()
    opt = make_optimizer(model, cfg)
    use_amp = cfg["amp"] and dev.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    if dev.type == "cuda": torch.cuda.reset_peak_memory_stats(dev)
    base = torch.cuda.memory_allocated(dev) / 2**30 if dev.type == "cuda" else _peak_mem_gib(dev)   # model, optimiser, batch, imports
    sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)
    for i in range(a["warmup"] + a["iters"]):
        if i == a["warmup"]: sync(); t0, c0 = time.perf_counter(), time.process_time()
        L = step_losses(model, model, batch, cfg, None, dev)   # the same step as `gvit_train._loop`
        opt.zero_grad(set_to_none=True)
        scaler.scale(L["loss"]).backward()
        if cfg["clip_grad"]:
            scaler.unscale_(opt); torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], cfg["clip_grad"])
        scaler.step(opt); scaler.update()
    sync(); s, cpu_s = (time.perf_counter() - t0) / a["iters"], (time.process_time() - c0) / a["iters"]
    return dict(model=f"{name} (random init)", size=size, trainable=trainable, parts="+".join(cfg["parts"]),
                trainable_M=round(n_train / 1e6, 2), params_M=round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
                batch_size=a["batch_size"], amp=a["amp"] if use_amp else "off", losses=sorted(k for k in L if k != "loss"),
                s_per_step=round(s, 4), cpu_s_per_step=round(cpu_s, 4), images_per_s=round(a["batch_size"] / s, 3),
                peak_mem_gib=round(_peak_mem_gib(dev), 3), step_mem_gib=round(_peak_mem_gib(dev) - base, 3),
                final_loss=round(float(L["loss"].detach()), 4),
                device=torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)")

def ratios(rows:list[dict], lo:int, hi:int) -> list[dict]:
    "hi-size / lo-size of time per step and peak memory for each (model, trainable) measured at both sizes."
    by = {(r["model"], r["trainable"], r["size"]): r for r in rows}
    out = []
    for (m, t, s), r in by.items():
        if s != lo or (m, t, hi) not in by: continue
        h = by[(m, t, hi)]
        out.append(dict(model=m, trainable=t, time=round(h["s_per_step"] / r["s_per_step"], 3),
                        cpu_time=round(h["cpu_s_per_step"] / r["cpu_s_per_step"], 3) if r.get("cpu_s_per_step") else None,
                        memory=round(h["peak_mem_gib"] / r["peak_mem_gib"], 3),
                        step_memory=round(h["step_mem_gib"] / r["step_mem_gib"], 3) if r["step_mem_gib"] > 0 else None))
    return out

@call_parse
def main(device:str="cpu", # "cpu", "cuda", "cuda:1"
         sizes:str="224,384", # input sides in pixels, comma-separated (multiples of 16)
         batch_size:int=2, # images per step (the texts are B captions + B·K labels)
         iters:int=2, # timed steps per row
         warmup:int=1, # untimed steps first
         amp:str="off", # "off" or "fp16" (autocast as in `step_losses`; CUDA only)
         models:str="full", # which random-init configs: full, tiny (comma-separated)
         trainable:str="default,all", # trainable-part sets: default (the preset's: both grouping blocks), all, or parts joined by +
         losses:str="", # extra loss terms, weight 1 each: any of ge,le,se (comma-separated)
         preset:str="t9-refined", # `cutler_nb.gvit_train` preset the other settings (K, labels, clipping, AdamW) come from
         threads:int=0, # torch CPU threads (0: torch's default)
         out:str=None, # optional JSON file for the results
        ):
    "Seconds per GroupViT training step and peak memory at each size, for the full-size (and tiny) random-init model."
    if amp not in ("off", "fp16"): raise SystemExit(f"groupvit_train_speed: --amp must be off or fp16, got {amp!r}")
    if amp == "fp16" and not device.startswith("cuda"): raise SystemExit("groupvit_train_speed: --amp fp16 needs --device cuda")
    if iters < 1 or warmup < 0 or batch_size < 1:
        raise SystemExit("groupvit_train_speed: --iters and --batch_size must be >= 1, --warmup >= 0")
    bad = [k for k in losses.split(",") if k and k not in ("ge", "le", "se")]
    if bad: raise SystemExit(f"groupvit_train_speed: --losses takes ge, le, se; got {bad}")
    size_list = [int(s) for s in sizes.split(",") if s.strip()]
    if any(s % 16 for s in size_list): raise SystemExit(f"groupvit_train_speed: --sizes must be multiples of 16, got {size_list}")
    model_list = [m.strip() for m in models.split(",") if m.strip()]
    if set(model_list) - {"full", "tiny"}: raise SystemExit(f"groupvit_train_speed: unknown model in {model_list} (full, tiny)")
    a = dict(device=device, batch_size=batch_size, iters=iters, warmup=warmup, amp=amp, losses=losses, preset=preset, threads=threads)
    rows, failed = [], []
    for name in model_list:
        for t in [t.strip() for t in trainable.split(",") if t.strip()]:
            for size in size_list:   # one fresh process each: its own peak RSS / allocator peak
                try:
                    with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as ex:
                        rows.append(ex.submit(measure, name, size, t, a).result())
                except Exception as e:   # e.g. CUDA out of memory at 384 px: a finding, kept as a row; the exit code says it
                    failed.append(dict(model=f"{name} (random init)", size=size, trainable=t, error=f"{type(e).__name__}: {str(e)[:300]}"))
                    print(f"  {name} {t} {size}px: FAILED {failed[-1]['error']}", flush=True); continue
                r = rows[-1]; print(f"  {r['model']} {r['trainable']} {size}px: {r['s_per_step']} s/step, {r['peak_mem_gib']} GiB", flush=True)
    rat = ratios(rows, size_list[0], size_list[-1]) if len(size_list) > 1 else []
    if not rows: raise SystemExit(f"groupvit_train_speed: every row failed: {failed}")
    res = dict(device=rows[0]["device"], rows=rows, failed=failed, ratios=rat, ratio_sizes=[size_list[0], size_list[-1]], iters=iters,
               warmup=warmup, note="random weights: speed only; one bundled-photo batch reused (data loading not timed); "
                                   "CPU memory = peak RSS of the process; step memory = peak minus the level before the first step")
    print(f"\nGroupViT training step (forward + losses + backward + AdamW), {res['device']}, batch {batch_size}, amp {amp} "
          f"(random weights: speed only)")
    print(f"{'model':<20}{'trainable':>12}{'train M':>9}{'size':>6}{'s/step':>9}{'CPU s':>8}{'img/s':>8}{'peak GiB':>10}{'step GiB':>10}  losses")
    for r in rows: print(f"{r['model']:<20}{r['trainable']:>12}{r['trainable_M']:>9}{r['size']:>6}{r['s_per_step']:>9}{r['cpu_s_per_step']:>8}"
                         f"{r['images_per_s']:>8}{r['peak_mem_gib']:>10}{r['step_mem_gib']:>10}  {'+'.join(r['losses'])}")
    for q in rat: print(f"{size_list[-1]}/{size_list[0]} {q['model']} {q['trainable']}: time x{q['time']}, CPU time x{q['cpu_time']}, "
                        f"peak memory x{q['memory']}, step memory x{q['step_memory']}")
    for f in failed: print(f"FAILED {f['model']} {f['trainable']} {f['size']}px: {f['error']}")
    print(json.dumps(res))
    if out:
        from cutler_nb.core import atomic_write_json
        atomic_write_json(res, out, indent=1)
    if failed: raise SystemExit(1)
    return res
