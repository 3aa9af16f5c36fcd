"End-to-end tests of `cutler-groupvit-train` (tiny random GroupViT, bundled photos, synthetic captions: plumbing, not results), and the all-gathered losses and training under 2 gloo ranks."
import json, os, shutil, subprocess, sys, tempfile
from pathlib import Path
import pytest

ENV = dict(os.environ, HF_HUB_OFFLINE="1", CUTLER_NB_OFFLINE="1", MPLBACKEND="Agg", PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1")
_script = shutil.which("cutler-groupvit-train") or str(Path(sys.executable).parent/"cutler-groupvit-train")
_shim = Path(tempfile.mkdtemp())/"cutler-groupvit-train"
_shim.write_text("import sys\nfrom cutler_nb.gvit_train import groupvit_train_cli\nsys.exit(groupvit_train_cli())\n")
CLI = [_script] if Path(_script).exists() else [sys.executable, str(_shim)]   # before `pip install -e .` installs the script
TINY = ["--model", "tiny", "--data", "sample", "--batch_size", "2", "--size", "64", "--benchmarks", "", "--device", "cpu", "--num_workers", "0"]


def run(cmd, rc=0, timeout=600):
    p = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=ENV, timeout=timeout)
    assert p.returncode == rc, f"{cmd} exited {p.returncode}, expected {rc}:\n{p.stdout[-3000:]}\n{p.stderr[-5000:]}"
    return p


def test_cli_runs_and_refuses_other_settings(tmp_path):
    out = tmp_path/"run"
    p = run([*CLI, out, "--preset", "t11-ge+le", *TINY, "--max_steps", "1"])
    assert p.stdout.strip().splitlines()[-1] == str(out/"final")
    assert (out/"final"/"config.json").exists() and (out/"checkpoints"/"last.pth").exists()
    rows = (out/"tables"/"metrics.csv").read_text().splitlines()
    assert len(rows) == 2 and rows[0].startswith("step,epoch,lr,loss,contrastive,multi_label,ge,le")
    cfg = json.loads((out/"train_config.json").read_text())["config"]
    assert cfg["ge"] == 1.0 and cfg["le"] == 1.0 and cfg["model"] == "tiny"
    p = run([*CLI, out, "--preset", "t11-ge+le", *TINY, "--max_steps", "2", "--lr", "0.5"], rc=1)
    assert p.stderr.strip().startswith("cutler-groupvit-train: error:") and "lr:" in p.stderr and len(p.stderr.strip().splitlines()) == 1
    p = run([*CLI, out, "--preset", "no-such-row", *TINY], rc=1)
    assert "unknown preset" in p.stderr


GATHER = r'''
import torch, torch.distributed as dist, torch.nn.functional as F
from cutler_nb.gvit_losses import contrastive_loss, multi_label_contrastive_loss
dist.init_process_group("gloo"); r, w = dist.get_rank(), dist.get_world_size()
g = torch.Generator().manual_seed(0)
img = F.normalize(torch.randn(4, 8, generator=g), dim=-1); txt = F.normalize(torch.randn(4, 8, generator=g), dim=-1)
lab = F.normalize(torch.randn(4, 3, 8, generator=g), dim=-1); val = torch.tensor([[1, 1, 1], [1, 0, 0], [1, 1, 0], [1, 1, 1]]).bool()   # 4 valid labels on rank 0, 5 on rank 1
def grads(fn, *xs):
    xs = [x.clone().requires_grad_(True) for x in xs]; l = fn(*xs); l.backward(); return l.detach(), [x.grad for x in xs]
full_c, gc = grads(lambda a, b: contrastive_loss(a, b, 5.0, gather=False), img, txt)
full_m, gm = grads(lambda a, b: multi_label_contrastive_loss(a, b, val, 5.0, gather=False), img, lab)
sl = slice(2 * r, 2 * r + 2)
loc_c, lc = grads(lambda a, b: contrastive_loss(a, b, 5.0), img[sl], txt[sl])
loc_m, lm = grads(lambda a, b: multi_label_contrastive_loss(a, b, val[sl], 5.0), img[sl], lab[sl])
for t in (loc_c, loc_m): dist.all_reduce(t); t /= w
assert torch.allclose(loc_c, full_c, atol=1e-5) and torch.allclose(loc_m, full_m, atol=1e-5), (loc_c, full_c, loc_m, full_m)
assert torch.allclose(lc[0] / w, gc[0][sl], atol=1e-5) and torch.allclose(lc[1] / w, gc[1][sl], atol=1e-5)
assert torch.allclose(lm[0] / w, gm[0][sl], atol=1e-5) and torch.allclose(lm[1] / w, gm[1][sl], atol=1e-5)
dist.barrier()   # both ranks passed their checks
if r == 0: print("gathered losses match:", float(loc_c), float(full_c), float(loc_m), float(full_m), flush=True)
dist.destroy_process_group()
'''


def _torchrun(script, *args):
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", script, *args]   # a free port


def test_gathered_losses_match_one_process(tmp_path):
    "Over 2 gloo ranks the all-gathered contrastive and multi-label losses (with unequal <PAD> counts per rank) average to the one-process loss of the global batch, and the local gradients are world × its gradient (DDP then averages)."
    s = tmp_path/"gather.py"; s.write_text(GATHER)
    p = run(_torchrun(s))
    assert "gathered losses match:" in p.stdout


def test_ddp_gloo_two_ranks(tmp_path):
    "2 CPU ranks × 1 pair (global batch 2), 2 steps with GE on: one set of outputs, written by rank 0, resumable."
    out = tmp_path/"ddp"
    run(_torchrun(_shim, out, "--preset", "t11-ge", *TINY, "--max_steps", "2"))
    rows = (out/"tables"/"metrics.csv").read_text().splitlines()
    assert len(rows) == 3 and rows[2].startswith("2,")
    cfg = json.loads((out/"train_config.json").read_text())["config"]
    assert cfg["world_size"] == 2 and cfg["batch_size"] == 2
    import torch
    ck = torch.load(out/"checkpoints"/"last.pth", map_location="cpu", weights_only=True)
    assert ck["step"] == 2 and len(ck["rng"]) == 2
