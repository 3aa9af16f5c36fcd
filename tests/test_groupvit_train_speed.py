"benchmarks/groupvit_train_speed.py: the ratio arithmetic, one tiny CPU run end to end, and bad settings refused."
import importlib.util, json, os, subprocess, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT/"benchmarks"/"groupvit_train_speed.py"
ENV = dict(os.environ, HF_HUB_OFFLINE="1", CUTLER_NB_OFFLINE="1", PYTHONPATH=str(ROOT))

def _load():
    spec = importlib.util.spec_from_file_location("groupvit_train_speed", SCRIPT)
    m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m); return m

def test_ratios_pair_rows_by_model_and_parts():
    m = _load()
    row = lambda t, s, sec, cpu, mem, step: dict(model="full (random init)", trainable=t, size=s, s_per_step=sec, cpu_s_per_step=cpu,
                                                 peak_mem_gib=mem, step_mem_gib=step)
    rows = [row("default", 224, 2.0, 1.0, 1.0, 0.5), row("default", 384, 5.0, 4.0, 1.5, 1.5), row("all", 224, 4.0, 4.0, 2.0, 1.0),
            row("all", 320, 9.0, 9.0, 3.0, 2.0)]
    r = m.ratios(rows, 224, 384)
    assert r == [dict(model="full (random init)", trainable="default", time=2.5, cpu_time=4.0, memory=1.5, step_memory=3.0)]   # "all" lacks a 384 row

def test_tiny_cpu_run(tmp_path):
    out = tmp_path/"r.json"
    p = subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", "--models", "tiny", "--sizes", "64,96", "--trainable", "default,all",
                        "--iters", "1", "--warmup", "0", "--losses", "ge", "--threads", "1", "--out", str(out)],
                       env=ENV, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    res = json.loads(out.read_text())
    assert "random weights" in res["note"] and "random weights" in p.stdout
    rows = {(r["trainable"], r["size"]): r for r in res["rows"]}
    assert set(rows) == {("default", 64), ("default", 96), ("all", 64), ("all", 96)}
    assert rows[("default", 64)]["parts"] == "gb1+gb2" and rows[("all", 64)]["parts"] == "all"
    assert rows[("default", 64)]["trainable_M"] < rows[("all", 64)]["trainable_M"] == rows[("all", 64)]["params_M"]
    assert rows[("all", 96)]["losses"] == ["contrastive", "ge", "multi_label"]
    assert all(r["s_per_step"] > 0 and r["peak_mem_gib"] > 0 for r in res["rows"])
    assert len(res["ratios"]) == 2 and res["ratio_sizes"] == [64, 96]

@pytest.mark.parametrize("args", [["--amp", "fp16"], ["--sizes", "224,390"], ["--losses", "ge,xx"], ["--models", "huge"]])
def test_bad_settings_exit_nonzero(args):
    p = subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", *args], env=ENV, capture_output=True, text=True, timeout=120)
    assert p.returncode != 0 and "groupvit_train_speed:" in p.stderr + p.stdout

def test_failed_row_is_reported_and_exits_1(tmp_path):
    out = tmp_path/"r.json"   # stage 3 of GroupViT has no grouping block: that row fails, the other is still measured
    p = subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", "--models", "tiny", "--sizes", "64", "--trainable", "default,gb3",
                        "--iters", "1", "--warmup", "0", "--threads", "1", "--out", str(out)], env=ENV, capture_output=True, text=True, timeout=300)
    assert p.returncode == 1 and "FAILED" in p.stdout
    res = json.loads(out.read_text())
    assert [r["trainable"] for r in res["rows"]] == ["default"] and "no grouping block" in res["failed"][0]["error"]
