"End-to-end runs of the `cutler-maskcut` console script on the bundled COCO sample."
import contextlib, io, json, os, shutil, signal, subprocess, sys, time
from pathlib import Path
import numpy as np
import pytest
from PIL import Image
import pycocotools.coco

from cutler_nb.data import sample_dataset, list_images, image_size, read_coco, rle_to_mask

def _cli():
    "The installed command; an install older than the move to `cutler_nb.pseudolabel` still points elsewhere: then the module itself."
    exe = shutil.which("cutler-maskcut") or str(Path(sys.executable).parent/"cutler-maskcut")
    if Path(exe).exists() and "pseudolabel" in Path(exe).read_text(errors="replace"): return [exe]
    return [sys.executable, "-m", "cutler_nb.pseudolabel"]

CLI = _cli()
ENV = dict(os.environ, HF_HUB_OFFLINE="1", MPLBACKEND="Agg", PYTHONUNBUFFERED="1")


def run(*args, check=True):
    p = subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, env=ENV, timeout=600)
    if check and p.returncode != 0: raise AssertionError(f"cutler-maskcut {' '.join(map(str, args))} failed:\n{p.stdout}\n{p.stderr}")
    return p


def load_coco(path):
    with contextlib.redirect_stdout(io.StringIO()): return pycocotools.coco.COCO(str(path))


def check_pseudo_labels(path, image_root):
    "The file loads in pycocotools; every mask decodes at its image's real size; boxes/areas come from the masks."
    c = load_coco(path)
    assert [x["name"] for x in c.loadCats(c.getCatIds())] == ["fg"]
    for im in c.loadImgs(c.getImgIds()):
        w, h = image_size(Path(image_root)/im["file_name"])
        assert (im["width"], im["height"]) == (w, h), im
        for a in c.loadAnns(c.getAnnIds(imgIds=im["id"])):
            m = c.annToMask(a).astype(bool)
            assert m.shape == (h, w) and isinstance(a["segmentation"]["counts"], str)
            assert a["area"] == int(m.sum()) > 0 and a["category_id"] == 1 and a["iscrowd"] == 0
            ys, xs = np.nonzero(m)
            assert a["bbox"] == [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)]
    return c


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    "Three bundled photos in a nested folder, plus a corrupt file."
    root = tmp_path_factory.mktemp("imgs")
    val = sample_dataset("coco_val_mini")
    for p in list_images(val.images)[:3]:
        (root/"a").mkdir(exist_ok=True); shutil.copy(p, root/"a"/p.name)
    (root/"broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    return root


def test_classic_with_crf(sample, tmp_path):
    out = tmp_path/"labels/pl.json"
    r = run(sample, "--backbone", "classic", "--out", out, "--device", "cpu", "--save_every", "1")
    assert out.exists() and str(out) in r.stdout
    c = check_pseudo_labels(out, sample)
    assert len(c.getImgIds()) == 3 and len(c.getAnnIds()) >= 3
    info = json.loads(out.read_text())["info"]["maskcut"]
    assert (info["backbone"], info["N"], info["tau"], info["fixed_size"], info["solver"], info["crf"]) == ("classic", 3, 0.15, 480, "arpack", True)
    fails = [json.loads(l) for l in (tmp_path/"labels/failures.jsonl").read_text().splitlines()]
    assert [(Path(f["file"]).name, f["stage"]) for f in fails] == [("broken.jpg", "load")]
    assert "3 images done (3 in this run), 1 failed" in r.stderr and "masks written" in r.stderr    # the run summary
    # resuming: nothing is recomputed, the file stays as it was; the broken file is retried but not logged twice
    before, fails_before = out.read_bytes(), (tmp_path/"labels/failures.jsonl").read_text()
    r = run(sample, "--backbone", "classic", "--out", out, "--device", "cpu")
    assert out.read_bytes() == before and "3 done already, 1 to go" in r.stderr
    assert (tmp_path/"labels/failures.jsonl").read_text() == fails_before
    # other parameters into the same file are refused, in one line
    r = run(sample, "--backbone", "classic", "--out", out, "--device", "cpu", "--tau", "0.3", check=False)
    assert r.returncode == 1 and "different settings (tau: 0.15 → 0.3)" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_pipelined_crf_workers_write_the_same_file(sample, tmp_path):
    "Batches of 2 with the CRF in 2 processes and prefetching: the same annotations as the serial run, same failures."
    serial, piped = tmp_path/"serial/pl.json", tmp_path/"piped/pl.json"
    run(sample, "--backbone", "classic", "--fixed_size", "240", "--out", serial, "--device", "cpu")
    run(sample, "--backbone", "classic", "--fixed_size", "240", "--out", piped, "--device", "cpu", "--batch_size", "2", "--crf_workers", "2")
    a, b = json.loads(serial.read_text()), json.loads(piped.read_text())
    assert a["images"] == b["images"] and len(a["annotations"]) >= 3
    assert [x["segmentation"] for x in a["annotations"]] == [x["segmentation"] for x in b["annotations"]]
    for d in (serial, piped):
        fails = [json.loads(l) for l in (d.parent/"failures.jsonl").read_text().splitlines()]
        assert [(Path(f["file"]).name, f["stage"]) for f in fails] == [("broken.jpg", "load")]


def test_random_vit_shards_and_merge(sample, tmp_path):
    out = tmp_path/"pl.json"
    for i in range(2):
        run(sample, "--backbone", "dino_vits16", "--pretrained", "False", "--crf", "False", "--fixed_size", "240",
            "--device", "cpu", "--shard", f"{i}/2", "--batch_size", "2", "--out", out)
    shards = sorted(tmp_path.glob("pl.*-of-2.json"))
    assert [s.name for s in shards] == ["pl.0-of-2.json", "pl.1-of-2.json"]
    r = run("merge", *shards, "--out", tmp_path/"merged.json")
    c = check_pseudo_labels(tmp_path/"merged.json", sample)
    assert sorted(im["file_name"] for im in c.loadImgs(c.getImgIds())) == sorted(f"a/{p.name}" for p in (sample/"a").iterdir())
    d = json.loads((tmp_path/"merged.json").read_text())
    assert len({a["id"] for a in d["annotations"]}) == len(d["annotations"])
    assert d["info"]["maskcut"]["pretrained"] is False and d["info"]["merged_from"] == [s.name for s in shards]


def test_coco_json_input(tmp_path):
    val = sample_dataset("coco_val_mini")
    gt = read_coco(val.annotations)
    sub = dict(gt, images=gt["images"][:2], annotations=[a for a in gt["annotations"] if a["image_id"] in {im["id"] for im in gt["images"][:2]}])
    (tmp_path/"gt.json").write_text(json.dumps(sub))
    out = tmp_path/"pl.json"
    run(tmp_path/"gt.json", "--image_root", val.images, "--backbone", "classic", "--crf", "False", "--fixed_size", "240",
        "--device", "cpu", "--N", "2", "--out", out)
    c = check_pseudo_labels(out, val.images)
    assert sorted(c.getImgIds()) == sorted(im["id"] for im in sub["images"])    # ids of the input file are kept
    assert max(len(c.getAnnIds(imgIds=i)) for i in c.getImgIds()) <= 2


def test_bad_inputs(tmp_path):
    "Uniform and too-small images are logged, not fatal; a result without masks needs --allow_empty; a missing input is a clear error."
    d = tmp_path/"imgs"; d.mkdir()
    Image.fromarray(np.full((60, 90, 3), 128, np.uint8)).save(d/"uniform.png")
    Image.fromarray(np.zeros((6, 200, 3), np.uint8)).save(d/"thin.png")
    (d/"folder.jpg").mkdir(); (d/"loop.png").symlink_to(d/"loop.png")
    out = tmp_path/"pl.json"
    args = (d, "--backbone", "dino_vits16", "--pretrained", "False", "--crf", "False", "--fixed_size", "160", "--device", "cpu", "--out", out)
    r = run(*args, check=False)
    assert r.returncode == 1 and "no mask was found in any of its 1 images; pass allow_empty" in r.stderr
    assert "folder.jpg: named like an image but a folder" in r.stderr and "loop.png: named like an image" in r.stderr
    run(*args, "--allow_empty", "True")
    got = json.loads(out.read_text())
    assert [im["file_name"] for im in got["images"]] == ["uniform.png"] and got["annotations"] == []
    fails = {Path(f["file"]).name: f for f in map(json.loads, (tmp_path/"failures.jsonl").read_text().splitlines())}
    assert "smaller than one 16×16 patch" in fails["thin.png"]["reason"] and "alike" in fails["uniform.png"]["reason"]
    r = run(tmp_path/"nothing_here", "--backbone", "classic", "--out", out, check=False)
    assert r.returncode != 0 and "nothing_here" in r.stderr


def test_spawned_crf_workers_as_on_macos(monkeypatch):
    "Where fork is unsafe (macOS, Windows) the CRF workers are spawned: same masks as in-process refinement."
    import cutler_nb.pseudolabel as mc
    monkeypatch.setattr(mc, "CRF_START_METHOD", "spawn")
    paths = list_images(sample_dataset("coco_val_mini").images)[:3]
    kw = dict(fixed_size=160, batch_size=2, details=True)
    ref = mc.maskcut_batch(paths, "classic", crf_workers=0, **kw)
    got = mc.maskcut_batch(paths, "classic", crf_workers=2, **kw)
    assert (2, "spawn") in mc._POOLS
    mc.close_crf_pools()
    for a, b in zip(ref, got):
        assert a.notes == b.notes and len(a.masks) == len(b.masks) >= 1
        assert all((x == y).all() for x, y in zip(a.masks, b.masks))
