"""Training (and inference) speed of CutLER's detectors, Mask R-CNN and Cascade Mask R-CNN side by side:
iterations/s, images/s and peak memory (CUDA: `torch.cuda.max_memory_allocated`; CPU: the process's peak RSS, which for
predict is the peak of the whole process so far, training included).

    python benchmarks/train_speed.py --device cuda --iters 200 --preset cutler          # CutLER's sizes, AMP fp16
    python benchmarks/train_speed.py --device cuda --iters 200 --amp bf16 --batch_size 4
    python benchmarks/train_speed.py --device cpu --iters 4 --warmup 1 --preset cpu-smoke --predict_images 2 --num_workers 0

Each architecture trains on the bundled COCO sample (ground truth used as pseudo-labels) with `cutler_nb.train.train`,
i.e. with the real data pipeline, copy-paste and DropLoss, then `predict` is timed on the sample. Each runs in a fresh
process, so that the CPU peak RSS is its own. The first `warmup` iterations (cuDNN autotuning, allocator growth) are
left out of the rate. Prints a table, the ratios cascade / maskrcnn, and writes all of it to `<out>/benchmark.json`.
`batch_size` is per process here; CutLER's 16 images over 8 GPUs is 2 per GPU. Weights are random: speed only.
"""
import json, tempfile, time
from concurrent.futures import ProcessPoolExecutor
import multiprocessing as mp
from pathlib import Path
from fastcore.script import call_parse, bool_arg

def _peak_mem_gib(dev) -> float:
    "Peak memory of this process: CUDA allocator peak on a GPU, maximum resident set size on the CPU."
    import torch, resource
    if dev.type == "cuda": return torch.cuda.max_memory_allocated(dev) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20   # Linux: KiB

def measure(arch:str, a:dict, out:Path) -> dict:
    "Train `arch` for `a['iters']` iterations, then time predict; one architecture, in its own process."
    import torch
    from cutler_nb.train import train, predict, _read_metrics
    from cutler_nb.data import sample_dataset, list_images
    s, dev = sample_dataset(a["sample"]), torch.device(a["device"])
    extra = json.loads(a["overrides"]) if a["overrides"] else {}
    amp = a["amp"] != "off" and dev.type == "cuda"
    if amp: extra["amp_dtype"] = a["amp"]
    if dev.type == "cuda": torch.backends.cudnn.benchmark = a["cudnn_benchmark"]; torch.cuda.reset_peak_memory_stats(dev)
    t0 = time.perf_counter()
    ck = train(s.annotations, s.images, out/arch, preset=a["preset"], arch=arch, max_iter=a["iters"], batch_size=a["batch_size"],
               device=a["device"], amp=amp, checkpoint_every=a["iters"], resume=False, num_workers=a["num_workers"], log_every=1, **extra)
    wall = time.perf_counter() - t0
    rows = _read_metrics(out/arch/"tables"/"metrics.csv")
    timed = [float(r["s_per_iter"]) for r in rows[a["warmup"]:]] or [float(r["s_per_iter"]) for r in rows]
    data = [float(r["data_s"]) for r in rows[a["warmup"]:]] or [0.0]
    res = dict(arch=arch, device=torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu", preset=a["preset"],
               batch_size=a["batch_size"], amp=a["amp"] if amp else "off", iters=a["iters"], warmup=a["warmup"],
               s_per_iter=sum(timed) / len(timed), it_per_s=len(timed) / sum(timed), images_per_s=a["batch_size"] * len(timed) / sum(timed),
               data_s_per_iter=sum(data) / len(data), train_wall_s=wall, peak_mem_gib=_peak_mem_gib(dev),
               first_loss=float(rows[0]["loss"]), final_loss=float(rows[-1]["loss"]), nonfinite_skipped=int(rows[-1]["skipped"]))
    if a["predict_images"]:
        imgs = list_images(s.images)[:a["predict_images"]]
        if dev.type == "cuda": torch.cuda.reset_peak_memory_stats(dev)
        t0 = time.perf_counter()
        predict(ck, s.images, out/f"pred_{arch}.json", images=imgs, ann_file=s.annotations, device=a["device"])
        dt = time.perf_counter() - t0
        res.update(predict_images=len(imgs), predict_images_per_s=len(imgs) / dt,
                   predict_dets=len(json.loads((out/f"pred_{arch}.json").read_text())), predict_peak_mem_gib=_peak_mem_gib(dev))
    return res

def ratios(res:dict, base:str="maskrcnn", other:str="cascade") -> dict:
    "other / base for the speed and memory figures both runs have."
    keys = ("it_per_s", "images_per_s", "peak_mem_gib", "predict_images_per_s", "predict_peak_mem_gib")
    return {k: res[other][k] / res[base][k] for k in keys if res[base].get(k) and res[other].get(k) is not None}

@call_parse
def main(device:str="cuda", # "cuda", "cuda:1" or "cpu"
         iters:int=200, # training iterations per architecture
         preset:str="cutler", # training preset of `cutler_nb.train` (its arch is overridden by `archs`)
         archs:str="maskrcnn,cascade", # architectures to compare, comma-separated
         batch_size:int=2, # images per iteration
         amp:str="fp16", # "off", "fp16" or "bf16" (CUDA only)
         warmup:int=20, # iterations excluded from the rate
         sample:str="coco_val_mini", # bundled sample to train and predict on
         num_workers:int=4, # data-loading processes
         predict_images:int=42, # images to time predict on (0: skip)
         out:str=None, # folder for runs and benchmark.json (default: a temporary one, deleted)
         overrides:str=None, # other preset keys as JSON
         cudnn_benchmark:bool_arg=False, # cuDNN autotuning: slow with multi-scale training (every new shape is re-tuned), off as in detectron2
        ):
    "Train and predict with each architecture in turn; print iterations/s, peak memory and the cascade / maskrcnn ratios."
    a = dict(locals())
    od = Path(out) if out else Path(tempfile.mkdtemp(prefix="train_speed_")); od.mkdir(parents=True, exist_ok=True)
    res = {}
    for arch in archs.split(","):   # one fresh process each: separate peak RSS, no allocator state carried over
        with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as ex: res[arch] = ex.submit(measure, arch, a, od).result()
    if "maskrcnn" in res and "cascade" in res: res["ratio_cascade_over_maskrcnn"] = ratios(res)
    print(f"{'arch':9s} {'it/s':>7s} {'img/s':>7s} {'peak GiB':>9s} {'pred img/s':>11s} {'pred GiB':>9s}  ({res[archs.split(',')[0]]['device']})")
    for k, r in res.items():
        if k.startswith("ratio"): continue
        print(f"{k:9s} {r['it_per_s']:7.3f} {r['images_per_s']:7.3f} {r['peak_mem_gib']:9.2f} {r.get('predict_images_per_s', float('nan')):11.3f} "
              f"{r.get('predict_peak_mem_gib', float('nan')):9.2f}")
    if "ratio_cascade_over_maskrcnn" in res: print("cascade / maskrcnn:", {k: round(v, 3) for k, v in res["ratio_cascade_over_maskrcnn"].items()})
    print(json.dumps(res, indent=1))
    (od/"benchmark.json").write_text(json.dumps(res, indent=1))
    if not out:
        import shutil; shutil.rmtree(od, ignore_errors=True)
    return res
