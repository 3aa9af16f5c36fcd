"Fresh-process checks of cutler_nb.features: weight lookup driven by the environment, and CPU/CUDA agreement (on a GPU)."
import os, subprocess, sys, textwrap, time
import pytest, torch
from cutler_nb.features import load_backbone, extract_features, preprocess, BACKBONES, ClassicBackbone

def _run(code, env):
    full = {k: v for k, v in os.environ.items() if k not in ("CUTLER_NB_WEIGHTS", "TORCH_HOME", "HF_HUB_OFFLINE", "CUTLER_NB_OFFLINE")}
    full.update(env)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=full, capture_output=True, text=True, timeout=120)

def test_hub_cache_from_torch_home(tmp_path):
    "Step 3 of the lookup as users meet it: $TORCH_HOME/hub/checkpoints, without set_dir."
    (tmp_path/"hub/checkpoints").mkdir(parents=True)
    (tmp_path/"hub/checkpoints/dino_vitbase8_pretrain.pth").write_bytes(b"x")
    r = _run("from cutler_nb.features import resolve_weights; print(resolve_weights('dino_vitb8'))",
             dict(TORCH_HOME=str(tmp_path), HF_HUB_OFFLINE="1"))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(tmp_path/"hub/checkpoints/dino_vitbase8_pretrain.pth")

@pytest.mark.parametrize("var", ["HF_HUB_OFFLINE", "CUTLER_NB_OFFLINE"])
def test_offline_without_weights_is_an_error(tmp_path, var):
    "pretrained=True with nothing to find and no network: WeightsNotFoundError, never random weights."
    (tmp_path/"w").mkdir()
    r = _run("""
        from cutler_nb.features import load_backbone
        from cutler_nb.core import WeightsNotFoundError
        try: load_backbone('dino_vitb8', device='cpu')
        except WeightsNotFoundError as e: print('ERR', e)
        else: print('LOADED')
        """, {var: "1", "CUTLER_NB_WEIGHTS": str(tmp_path/"w"), "TORCH_HOME": str(tmp_path/"th")})
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert out.startswith("ERR") and "dino_vitbase8_pretrain.pth" in out and "offline" in out
    assert "https://dl.fbaipublicfiles.com/dino/dino_vitbase8_pretrain/dino_vitbase8_pretrain.pth" in out

def _cos(a, b):
    return torch.nn.functional.cosine_similarity(a.flatten(2), b.flatten(2), dim=1)

@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_matches_cpu():
    "Same weights, same input: CUDA float32 features equal the CPU's; bf16 autocast keeps the keys' directions."
    torch.manual_seed(0)
    x = torch.randn(4, 3, 480, 480)
    for name in ("dino_vits16", "classic"):
        torch.manual_seed(0); cpu = load_backbone(name, pretrained=False, device="cpu")
        gpu = load_backbone(name, pretrained=False, device="cpu").to("cuda")
        gpu.load_state_dict(cpu.state_dict())
        fc = extract_features(cpu, x, batch_size=2)
        fg = extract_features(gpu, x, batch_size=4).cpu()
        assert (fc - fg).abs().max() <= 1e-3 * max(1.0, fc.abs().max().item()), name
        fb = extract_features(gpu, x, batch_size=4, dtype=torch.bfloat16).cpu()
        assert fb.dtype == torch.float32
        assert _cos(fc, fb).min() > 0.98, (name, _cos(fc, fb).min())
        ac, ag = cpu.cls_attention(x[:2]), gpu.cls_attention(x[:2].cuda()).cpu()
        assert (ac - ag).abs().max() < 1e-4
