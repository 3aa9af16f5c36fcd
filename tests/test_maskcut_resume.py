"`cutler-maskcut` never hands back a wrong result: resume only matching work, refuse bad settings, save progress in O(new work), leave no workers behind."
import contextlib, io, json, os, shutil, signal, subprocess, sys, time
from pathlib import Path
import numpy as np
import pytest
from PIL import Image

from cutler_nb.data import sample_dataset, list_images, read_coco
import cutler_nb.pseudolabel as pl
from test_maskcut_cli import CLI, ENV, run

PHOTOS = list_images(sample_dataset("coco_val_mini").images)
FAST = ("--backbone", "classic", "--crf", "False", "--fixed_size", "160", "--device", "cpu")


def folder(root, photos, names=None):
    root.mkdir(parents=True, exist_ok=True)
    for p, n in zip(photos, names or [p.name for p in photos]): shutil.copy(p, root/n)
    return root


def test_other_folder_with_the_same_names_is_refused(tmp_path):
    "Folder A, then folder C with the same file names (other photos) into the same --out: refused before any work, one line, exit 1."
    names = ["x.jpg", "y.jpg"]
    a, c = folder(tmp_path/"A", PHOTOS[:2], names), folder(tmp_path/"C", PHOTOS[2:4], names)
    out = tmp_path/"pl.json"
    run(a, *FAST, "--out", out)
    before = out.read_bytes()
    r = run(c, *FAST, "--out", out, check=False)
    assert r.returncode == 1, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cutler-maskcut: error:") and "input_files" in lines[0], r.stderr
    assert "to start afresh" in lines[0] and "images in this shard" not in r.stderr          # no work began
    assert out.read_bytes() == before
    # the same folder again resumes (nothing to do); touching a file counts as a change
    assert "2 done already, 0 to go" in run(a, *FAST, "--out", out).stderr
    os.utime(a/"x.jpg", ns=(1, 1))
    assert run(a, *FAST, "--out", out, check=False).returncode == 1


def test_a_file_without_input_fingerprint_is_not_resumed(tmp_path):
    "A pseudo-label file from before the fingerprint (or from other inputs), with no progress record: refused, naming what differs."
    imgs = folder(tmp_path/"imgs", PHOTOS[:2])
    out = pl.run_maskcut(imgs, tmp_path/"pl.json", backbone="classic", crf=False, fixed_size=160, device="cpu", progress=False)
    pl.progress_path(out).unlink()
    d = json.loads(out.read_text()); d["info"]["maskcut"].pop("input_files"); out.write_text(json.dumps(d))
    with pytest.raises(pl.CutlerError, match="input_files: null"):
        pl.run_maskcut(imgs, out, backbone="classic", crf=False, fixed_size=160, device="cpu", progress=False)
    # with the fingerprint restored, the COCO file alone is resumed: it becomes the progress record
    d["info"]["maskcut"]["input_files"] = pl.inputs_fingerprint(pl.collect_inputs(imgs)); out.write_text(json.dumps(d))
    pl.run_maskcut(imgs, out, backbone="classic", crf=False, fixed_size=160, device="cpu", progress=False)
    hd, recs, _ = pl.read_progress(pl.progress_path(out))
    assert [r["image"]["file_name"] for r in recs] == [im["file_name"] for im in d["images"]]


BAD = [(("--solver", "nonsense"), "unknown solver 'nonsense'"), (("--facet", "zz"), "unknown facet 'zz'"),
       (("--N", "0"), "N must be"), (("--N", "-1"), "N must be"), (("--tau", "1"), "tau must lie in [0, 1)"),
       (("--tau", "-0.2"), "tau must"), (("--fixed_size", "16"), "fixed_size=16 is below 4 patches"),
       (("--batch_size", "0"), "batch_size must"), (("--crf_workers", "-1"), "crf_workers must"),
       (("--orientation", "official"), "solver='dense'"), (("--dtype", "fp12"), "unknown precision"),
       (("--backbone", "resnet"), "unknown backbone")]


@pytest.mark.parametrize("args,msg", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_settings_fail_before_any_work(args, msg, tmp_path, capsys):
    "Each bad setting: exit 1, one line naming it; no labels file, no failures log, no progress record."
    imgs = folder(tmp_path/"imgs", PHOTOS[:1]); out = tmp_path/"out/pl.json"
    kw = dict(backbone="classic", crf=False, fixed_size=160, device="cpu")
    flag, val = args[0][2:], args[1]
    kw[flag] = type(kw.get(flag, 0) if flag != "tau" else 0.0)(val) if flag in ("N", "batch_size", "crf_workers", "fixed_size", "tau") else val
    with pytest.raises(SystemExit) as e: pl.maskcut_cli(inputs=[str(imgs)], out=str(out), **kw)
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 1 and len(err) == 1 and err[0].startswith("cutler-maskcut: error:") and msg in err[0], err
    assert not (tmp_path/"out").exists()


def test_bad_setting_from_the_shell(tmp_path):
    r = run(folder(tmp_path/"imgs", PHOTOS[:1]), "--solver", "nonsense", "--out", tmp_path/"pl.json", check=False)
    assert r.returncode == 1 and r.stderr.strip().splitlines() == ["cutler-maskcut: error: unknown solver 'nonsense'; choose one of dense, arpack, torch"]
    assert not (tmp_path/"pl.json").exists() and not (tmp_path/"failures.jsonl").exists()


def test_empty_or_all_bad_input_is_an_error(tmp_path):
    (tmp_path/"empty").mkdir()
    r = run(tmp_path/"empty", *FAST, "--out", tmp_path/"a.json", check=False)
    assert r.returncode == 1 and "no images found" in r.stderr and not (tmp_path/"a.json").exists()
    bad = tmp_path/"bad"; bad.mkdir(); (bad/"broken.jpg").write_bytes(b"\xff\xd8\xff no jpeg")
    r = run(bad, *FAST, "--out", tmp_path/"b.json", check=False)
    assert r.returncode == 1 and "no image could be labelled" in r.stderr and not (tmp_path/"b.json").exists()
    r = run(bad, *FAST, "--out", tmp_path/"b.json", "--allow_empty", "True")
    assert read_coco(tmp_path/"b.json")["images"] == []
    assert len((tmp_path/"failures.jsonl").read_text().splitlines()) == 1          # the same failure, logged once


def test_progress_is_appended_and_the_coco_file_written_once(tmp_path, monkeypatch):
    "Saving after every image appends one line each; the COCO file is assembled once, at the end; a torn line is ignored on resume."
    writes = []
    real = pl.write_coco
    monkeypatch.setattr(pl, "write_coco", lambda d, p, **kw: (writes.append(len(d["images"])), real(d, p, **kw))[1])
    imgs = folder(tmp_path/"imgs", PHOTOS[:4])
    kw = dict(backbone="classic", crf=False, fixed_size=160, device="cpu", progress=False, save_every=1)
    out = pl.run_maskcut(imgs, tmp_path/"pl.json", **kw)
    assert writes == [4]
    lines = pl.progress_path(out).read_text().splitlines()
    assert len(lines) == 5 and "header" in json.loads(lines[0]) and all("image" in json.loads(l) for l in lines[1:])
    ref = read_coco(out)
    # a kill after two images, in the middle of writing the third
    out.unlink(); pl.progress_path(out).write_text("\n".join(lines[:3]) + "\n" + lines[3][:40])
    writes.clear(); pl.run_maskcut(imgs, out, **kw)
    assert writes == [4]
    got = read_coco(out)
    assert got["images"] == ref["images"] and got["annotations"] == ref["annotations"]
    assert len(pl.progress_path(out).read_text().splitlines()) == 5


def test_killed_run_leaves_no_crf_workers(tmp_path):
    "SIGKILL the command while its CRF workers run: the workers end within a few seconds."
    psutil = pytest.importorskip("psutil")
    imgs = folder(tmp_path/"imgs", PHOTOS[:12])
    p = subprocess.Popen([*CLI, imgs, "--backbone", "classic", "--device", "cpu", "--crf_workers", "2", "--out", tmp_path/"pl.json"],
                         env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        proc, t0, kids = psutil.Process(p.pid), time.time(), []
        while time.time() - t0 < 120 and p.poll() is None:
            kids = proc.children(recursive=True)
            if len(kids) >= 2 and pl.progress_path(tmp_path/"pl.json").exists(): break
            time.sleep(0.2)
        assert len(kids) >= 2 and p.poll() is None, "the CRF workers did not start"
        time.sleep(1)
        kids = proc.children(recursive=True)
        p.send_signal(signal.SIGKILL); p.wait()
        gone, alive = psutil.wait_procs(kids, timeout=8)
        assert alive == [], f"still alive after the parent was killed: {alive}"
    finally:
        if p.poll() is None: p.kill()


def test_help_without_torch():
    "`cutler-maskcut --help` through the fast launcher: the whole help, without importing torch."
    pytest.importorskip("cutler_nb.cli")
    code = ("import sys; sys.argv = ['cutler-maskcut', '--help']\nfrom cutler_nb.cli import Launcher\n"
            "try: Launcher('cutler_nb.pseudolabel:maskcut_cli')()\nexcept SystemExit: pass\nprint('torch imported:', 'torch' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, timeout=60)
    assert "--allow_empty" in r.stdout and "--orientation" in r.stdout and "torch imported: False" in r.stdout, r.stdout + r.stderr
