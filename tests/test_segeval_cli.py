"End-to-end runs of the `cutler-segeval` console script with the tiny random GroupViT on bundled COCO-Object photos."
import json, os, shutil, signal, subprocess, sys, tempfile, time
from pathlib import Path
import pytest

ENV = dict(os.environ, HF_HUB_OFFLINE="1", CUTLER_NB_OFFLINE="1", MPLBACKEND="Agg", PYTHONUNBUFFERED="1")
_script = shutil.which("cutler-segeval") or str(Path(sys.executable).parent/"cutler-segeval")
CLI = [_script]
if not Path(_script).exists():   # before `pip install -e .` installs the console script: the same entry point from a file
    _shim = Path(tempfile.mkdtemp())/"cutler-segeval"
    _shim.write_text("import sys\nfrom cutler_nb.semseg import segeval_cli\nsys.exit(segeval_cli())\n")
    CLI = [sys.executable, str(_shim)]
# small windows keep the CPU cost low while still sliding several crops per photo
BASE = ["random", "--tiny", "--dataset", "coco_object_mini", "--limit", "3", "--size", "128", "--crop", "128",
        "--stride", "64", "--device", "cpu", "--no_progress"]


def run(*args, check=True):
    p = subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, env=ENV, timeout=600)
    if check and p.returncode != 0: raise AssertionError(f"cutler-segeval {' '.join(map(str, args))} failed:\n{p.stdout}\n{p.stderr}")
    return p


def records(out): return (Path(out)/"records/shard-0-of-1.jsonl").read_text().splitlines()


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    out = tmp_path_factory.mktemp("full")/"run"
    r = run(*BASE, "--out", out)
    return out, r


def test_outputs(full):
    out, r = full
    res = json.loads((out/"results.json").read_text())
    assert res["n_images"] == 3 and 0 <= res["miou"] <= 100 and res["random_weights"] is True
    assert f"mIoU {res['miou']:.2f} % over 3 images" in r.stdout
    md = (out/"per_class_iou.md").read_text()
    assert "plumbing run: random weights" in md and "tiny GroupViT, random init" in md
    csv_rows = (out/"per_class_iou.csv").read_text().splitlines()
    assert csv_rows[0] == "class,IoU (%)" and len(csv_rows) == 1 + 81 + 1 and csv_rows[-1].startswith("mIoU,")
    assert (out/"iou_per_class.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    params = json.loads((out/"params.json").read_text())
    assert params["settings"]["dataset"] == "coco_object" and params["settings"]["size"] == 128 and params["random_weights"]
    lines = records(out)
    assert len(lines) == 4 and "settings" in json.loads(lines[0])
    ids = [json.loads(l)["id"] for l in lines[1:]]
    assert ids == sorted(p.stem for p in (Path(__file__).parent.parent/"cutler_nb/assets/coco_object_mini/labels").glob("*.png"))[:3]


def test_rerun_recomputes_nothing(full, tmp_path):
    out, _ = full
    before = records(out)
    r = run(*BASE, "--out", out)
    assert "3 recorded already, 0 to do" in r.stderr and records(out) == before


def test_killed_run_resumes(full, tmp_path):
    "A run killed mid-way (SIGKILL) keeps its finished images; the resumed run computes only the rest and gets the same mIoU."
    ref = json.loads((full[0]/"results.json").read_text())["miou"]
    out = tmp_path/"killed"
    p = subprocess.Popen([*CLI, *BASE, "--out", str(out), "--size", "128"], env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    rec = out/"records/shard-0-of-1.jsonl"; t0 = time.time()
    while time.time() - t0 < 300 and p.poll() is None:
        if rec.exists() and len(rec.read_text().splitlines()) >= 2: break   # header + at least one image
        time.sleep(0.02)
    p.send_signal(signal.SIGKILL); p.wait()
    kept = [l for l in rec.read_text().split("\n")[:-1]]                      # complete lines only
    assert len(kept) >= 2
    r = run(*BASE, "--out", out)
    assert f"{len(kept) - 1} recorded already, {4 - len(kept)} to do" in r.stderr
    assert records(out)[:len(kept)] == kept
    assert json.loads((out/"results.json").read_text())["miou"] == pytest.approx(ref)


def test_cut_short_line_is_redone(full, tmp_path):
    out = tmp_path/"cut"; shutil.copytree(full[0], out)
    lines = records(out)
    (out/"records/shard-0-of-1.jsonl").write_text("\n".join(lines[:2]) + "\n" + lines[2][:30])   # killed while writing image 2
    r = run(*BASE, "--out", out)
    assert "1 recorded already, 2 to do" in r.stderr
    assert records(out)[:2] == lines[:2] and len(records(out)) == 4
    assert json.loads((out/"results.json").read_text())["miou"] == pytest.approx(json.loads((full[0]/"results.json").read_text())["miou"])


def test_other_settings_refused(full):
    out, _ = full
    r = run(*BASE, "--out", out, "--bg_threshold", "0.5", check=False)
    assert r.returncode == 1 and r.stderr.strip().count("\n") == 0, r.stderr
    assert r.stderr.startswith("cutler-segeval: error:") and "different settings (bg_threshold: 0.9 → 0.5)" in r.stderr


def test_bad_inputs_one_line(tmp_path):
    for args, msg in [(["--dataset", "kitti"], "unknown dataset 'kitti'"),
                      (["--dataset", "voc", "--root", tmp_path/"missing"], "dataset root does not exist")]:
        r = run(*BASE, *args, "--out", tmp_path/"o", check=False)
        assert r.returncode == 1 and r.stderr.strip().count("\n") == 0 and msg in r.stderr, r.stderr
    r = run("some/checkpoint", "--tiny", "--dataset", "coco_object_mini", "--out", tmp_path/"o", check=False)
    assert r.returncode == 1 and "pass CHECKPOINT 'random'" in r.stderr


def test_torchrun_two_ranks(full, tmp_path):
    "Two torchrun ranks (CPU, gloo) split the images, rank 0 merges: the same mIoU as one process."
    torchrun = Path(sys.executable).parent/"torchrun"
    if not torchrun.exists(): pytest.skip("torchrun not installed")
    out = tmp_path/"ddp"
    p = subprocess.run([str(torchrun), "--nproc_per_node=2", CLI[-1], *BASE, "--out", str(out)],
                       capture_output=True, text=True, env=ENV, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    assert sorted(f.name for f in (out/"records").glob("*.jsonl")) == ["shard-0-of-2.jsonl", "shard-1-of-2.jsonl"]
    assert p.stdout.count("mIoU") == 1                                          # only rank 0 reports
    ref = json.loads((full[0]/"results.json").read_text())["miou"]
    assert json.loads((out/"results.json").read_text())["miou"] == pytest.approx(ref)
