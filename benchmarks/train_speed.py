"""Training (and inference) speed of the CutLER detector: iterations/s and peak GPU memory.

    python benchmarks/train_speed.py --device cuda --iters 300 --preset cutler            # CutLER's sizes, AMP fp16
    python benchmarks/train_speed.py --device cuda --iters 300 --preset cutler --amp bf16 --batch_size 4
    python benchmarks/train_speed.py --device cpu --iters 3 --preset cpu-smoke            # a laptop check

Trains on the bundled COCO sample (ground truth used as pseudo-labels) with `cutler_nb.train.train`, i.e. with
the real data pipeline, copy-paste and DropLoss, then times `predict` on the sample. The first `--warmup`
iterations (cuDNN autotuning, allocator growth) are left out of the rate. Prints one JSON object and writes it to
`<out>/benchmark.json`. `batch_size` is per process here; CutLER's 16 images over 8 GPUs is 2 per GPU.
"""
import argparse, json, os, sys, tempfile, time
from pathlib import Path

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda"); p.add_argument("--iters", type=int, default=300)
    p.add_argument("--preset", default="cutler"); p.add_argument("--batch_size", type=int, default=2)
    p.add_argument("--amp", default="fp16", help="off, fp16 or bf16 (CUDA only)")
    p.add_argument("--warmup", type=int, default=20, help="iterations excluded from the rate")
    p.add_argument("--sample", default="coco_val_mini"); p.add_argument("--num_workers", type=int, default=4)
    p.add_argument("--predict_images", type=int, default=42, help="images to time predict on (0: skip)")
    p.add_argument("--out", default=None, help="run folder (default: a temporary one, deleted)")
    p.add_argument("--overrides", default=None, help="other preset keys as JSON")
    p.add_argument("--cudnn_benchmark", action="store_true",
                   help="cuDNN autotuning: slow with multi-scale training (every new input shape is re-tuned), off by default as in detectron2")
    a = p.parse_args(argv)
    import torch
    from cutler_nb.train import train, predict, _read_metrics
    from cutler_nb.data import sample_dataset
    s = sample_dataset(a.sample)
    out = Path(a.out) if a.out else Path(tempfile.mkdtemp(prefix="train_speed_"))
    extra = json.loads(a.overrides) if a.overrides else {}
    amp = a.amp != "off"
    if amp: extra["amp_dtype"] = a.amp
    dev = torch.device(a.device)
    if dev.type == "cuda": torch.backends.cudnn.benchmark = a.cudnn_benchmark
    t0 = time.perf_counter()
    ck = train(s.annotations, s.images, out/"run", preset=a.preset, max_iter=a.iters, batch_size=a.batch_size, device=a.device,
               amp=amp, checkpoint_every=a.iters, resume=False, num_workers=a.num_workers, log_every=1, **extra)
    wall = time.perf_counter() - t0
    rows = _read_metrics(out/"run"/"tables"/"metrics.csv")
    timed = [float(r["s_per_iter"]) for r in rows[a.warmup:]] or [float(r["s_per_iter"]) for r in rows]
    data = [float(r["data_s"]) for r in rows[a.warmup:]] or [0.0]
    res = dict(device=torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu", preset=a.preset, batch_size=a.batch_size,
               amp=a.amp if dev.type == "cuda" else "off", iters=a.iters, warmup=a.warmup,
               s_per_iter=sum(timed) / len(timed), it_per_s=len(timed) / sum(timed), images_per_s=a.batch_size * len(timed) / sum(timed),
               data_s_per_iter=sum(data) / len(data), train_wall_s=wall,
               peak_mem_gib=torch.cuda.max_memory_allocated(dev) / 2**30 if dev.type == "cuda" else None,
               final_loss=float(rows[-1]["loss"]), first_loss=float(rows[0]["loss"]),
               nonfinite_skipped=int(rows[-1]["skipped"]))
    if a.predict_images:
        from cutler_nb.data import list_images
        imgs = list_images(s.images)[:a.predict_images]
        if dev.type == "cuda": torch.cuda.reset_peak_memory_stats(dev)
        t0 = time.perf_counter()
        predict(ck, s.images, out/"pred.json", images=imgs, ann_file=s.annotations, device=a.device)
        dt = time.perf_counter() - t0
        res.update(predict_images=len(imgs), predict_images_per_s=len(imgs) / dt, predict_dets=len(json.loads((out/"pred.json").read_text())),
                   predict_peak_mem_gib=torch.cuda.max_memory_allocated(dev) / 2**30 if dev.type == "cuda" else None)
    print(json.dumps(res, indent=1))
    (out/"benchmark.json").write_text(json.dumps(res, indent=1))
    if not a.out:
        import shutil; shutil.rmtree(out, ignore_errors=True)
    return res

if __name__ == "__main__": main()
