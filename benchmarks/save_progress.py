"""Saving MaskCut progress at ImageNet scale: the old full rewrite of the pseudo-label file against the append-only record.

No MaskCut runs here: every image record is simulated (an image entry and `masks` small RLE masks, the same for
every image), so only the cost of saving is measured.

- **old** (before `cutler_nb.pseudolabel`): every `save_every` images the whole COCO file was validated and rewritten
  (`write_coco(make_coco(...))`), so the n-th save costs O(n) and a run O(N²/save_every). One save is timed at a few
  file sizes; with the smallest measured cost per image c, the n-th save costs c·n and the total for N images is
  the sum over its N/save_every saves, ≈ c·N²/(2·save_every): a lower bound. A short run of the real loop
  (`old_direct` images) checks the extrapolation.
- **new**: each image is one appended JSON line (`ProgressWriter`: flushed per line, fsynced every `save_every` lines,
  at most once a second), and the COCO file is assembled once at the end (`read_progress` + `assemble_coco`, validated,
  atomic). Appending is run in full for every size; the assembly (memory-hungry at 1 M) for `assemble_sizes`.

Examples:
    python benchmarks/save_progress.py                                   # 100 k and 1 M images
    python benchmarks/save_progress.py --sizes 10000,100000 --assemble_sizes 1000,10000
"""
from __future__ import annotations
import os, shutil, tempfile, time
from pathlib import Path
import numpy as np
from fastcore.script import call_parse


def _annotations(masks:int, H:int=375, W:int=500) -> list[dict]:
    "`masks` RLE annotations (without ids) of ellipses in an ImageNet-sized image."
    from cutler_nb.data import mask_annotation
    yy, xx = np.mgrid[:H, :W]; out = []
    for k in range(masks):
        m = ((yy - 80 - 60 * k) / 50) ** 2 + ((xx - 120 - 90 * k) / 70) ** 2 < 1
        a = mask_annotation(m, 0, 0); a.pop("id"); a.pop("image_id"); out.append(a)
    return out


def _hms(t:float) -> str: return f"{t / 3600:,.1f} h" if t >= 3600 else f"{t:,.1f} s"


def _records(n:int, anns:list):
    for i in range(1, n + 1):
        yield dict(image=dict(id=i, file_name=f"n{i // 1300:08d}/img_{i:08d}.JPEG", width=500, height=375), annotations=anns)


def _old_save(n:int, anns:list, path:Path) -> float:
    "Seconds of one save of the old scheme with n images: validate the whole COCO dict and rewrite the file."
    from cutler_nb.data import make_coco, write_coco
    images, coco_anns = [], []
    for r in _records(n, anns):
        images.append(r["image"]); coco_anns += [dict(a, id=len(coco_anns) + k + 1, image_id=r["image"]["id"]) for k, a in enumerate(r["annotations"])]
    d = make_coco(images, coco_anns, info=dict(maskcut=dict(N=3)))
    t0 = time.perf_counter(); write_coco(d, path); return time.perf_counter() - t0


def _old_direct(n:int, anns:list, save_every:int, path:Path) -> float:
    "Seconds of the real old loop: append an image, rewrite everything every `save_every` images."
    from cutler_nb.data import make_coco, write_coco
    images, coco_anns, t = [], [], 0.0
    for i, r in enumerate(_records(n, anns), 1):
        t0 = time.perf_counter()
        images.append(r["image"]); coco_anns += [dict(a, id=len(coco_anns) + k + 1, image_id=r["image"]["id"]) for k, a in enumerate(r["annotations"])]
        if i % save_every == 0 or i == n: write_coco(make_coco(images, coco_anns, info=dict(maskcut=dict(N=3))), path)
        t += time.perf_counter() - t0
    return t


def _new(n:int, anns:list, save_every:int, folder:Path, assemble:bool=True) -> tuple[float, float]:
    "(seconds appending n records, seconds assembling the COCO file once) of the new scheme."
    from cutler_nb.pseudolabel import ProgressWriter, read_progress, assemble_coco, progress_path
    out = folder/f"new_{n}.json"; prog = progress_path(out)
    t0 = time.perf_counter()
    w = ProgressWriter(prog, header=dict(maskcut=dict(N=3), info={}), sync_every=save_every)
    for r in _records(n, anns): w.write(r)
    w.close(); t_append = time.perf_counter() - t0
    t_asm = float("nan")
    if assemble:
        t0 = time.perf_counter(); header, recs, _ = read_progress(prog); assemble_coco(recs, header["info"], out)
        t_asm = time.perf_counter() - t0; del recs
    print(f"  progress record {prog.stat().st_size / 1e6:.0f} MB" + (f", COCO file {out.stat().st_size / 1e6:.0f} MB" if assemble else ""), flush=True)
    prog.unlink(); out.unlink(missing_ok=True)
    return t_append, t_asm


@call_parse
def main(sizes:str="100000,1000000", # image counts to simulate (comma-separated)
         masks:int=3, # RLE masks per image
         save_every:int=10, # images between saves (the runner's default)
         old_sizes:str="1000,4000,16000,32000", # file sizes (images) at which one old-scheme save is timed
         old_direct:int=2000, # images of a real old-scheme run, to check the extrapolation (0: skip)
         assemble_sizes:str="10000,100000", # image counts at which the new scheme's one assembly of the COCO file is timed
         folder:str=None, # where the files go (default: a temporary folder, removed afterwards)
        ):
    "Total time spent saving progress for 100 k and 1 M simulated images: old full rewrite (extrapolated) vs append-only record."
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    tmp = Path(folder) if folder else Path(tempfile.mkdtemp(prefix="save_progress_")); tmp.mkdir(parents=True, exist_ok=True)
    anns = _annotations(masks); Ns = [int(x) for x in sizes.split(",")]
    try:
        print(f"[old scheme] one save (validate + rewrite the whole file) at n images; {masks} masks per image")
        ns = [int(x) for x in old_sizes.split(",")]
        ts = [min(_old_save(n, anns, tmp/"old.json") for _ in range(2)) for n in ns]
        for n, t in zip(ns, ts): print(f"  n = {n:>8,d}: {t:7.3f} s per save ({t / n * 1e6:.1f} µs per image in the file)", flush=True)
        # one save costs c·n; the smallest measured c makes the extrapolated total a lower bound (GC and memory make it grow)
        c = min(t / n for n, t in zip(ns, ts))
        total = lambda N: sum(c * min(j * save_every, N) for j in range(1, -(-N // save_every) + 1))
        if old_direct:
            t = _old_direct(old_direct, anns, save_every, tmp/"old.json")
            print(f"  check: a real run of {old_direct:,d} images took {t:.1f} s saving; the fit predicts {total(old_direct):.1f} s")
        print(f"\n[new scheme] one appended line per image (flushed; fsync every {save_every} lines, at most 1/s), one assembly at the end")
        asm = {}
        for N in [int(x) for x in assemble_sizes.split(",") if x]:
            t_app, asm[N] = _new(N, anns, save_every, tmp, True)
            print(f"  N = {N:>9,d}: appending {t_app:8.1f} s; assembly once {asm[N]:7.1f} s ({asm[N] / N * 1e6:.0f} µs per image)", flush=True)
        fit = np.polyfit(list(asm), list(asm.values()), 1) if len(asm) > 1 else None
        rows = []
        for N in Ns:
            t_app = _new(N, anns, save_every, tmp, False)[0]
            t_asm, how = (asm[N], "measured") if N in asm else ((float(np.polyval(fit, N)), "extrapolated") if fit is not None else (float("nan"), "-"))
            rows.append((N, total(N), t_app, t_asm, how))
            print(f"  N = {N:>9,d}: appending {t_app:8.1f} s ({t_app / N * 1e6:.0f} µs per image)", flush=True)
        print(f"\n| images | old: full rewrite every {save_every} (extrapolated, at least) | new: append (measured) | new: assembly once | new total | new per image |")
        print("|---:|---:|---:|---:|---:|---:|")
        for N, t_old, t_app, t_asm, how in rows:
            tot = t_app + t_asm
            print(f"| {N:,d} | {_hms(t_old)} | {t_app:,.1f} s | {t_asm:,.1f} s ({how}) | {tot:,.1f} s | {tot / N * 1e6:.0f} µs |")
        if len(rows) > 1:
            (N0, o0, a0, s0, _), (N1, o1, a1, s1, _) = rows[0], rows[-1]
            print(f"\n{N1 / N0:.0f}x the images: old {o1 / o0:.0f}x the saving time (quadratic); new appending {a1 / a0:.1f}x, "
                  f"new total {(a1 + s1) / (a0 + s0):.1f}x (linear)")
    finally:
        if not folder: shutil.rmtree(tmp, ignore_errors=True)
