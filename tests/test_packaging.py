"Packaging contracts: one dependency set, console scripts that resolve, package data present."
import configparser, importlib, json, re, shlex
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]

def _settings():
    c = configparser.ConfigParser(delimiters=["="]); c.read(ROOT/"settings.ini"); return c["DEFAULT"]

def _env_pip():
    lines = (ROOT/"environment.yml").read_text().splitlines()
    i = next(n for n, l in enumerate(lines) if l.strip() == "- pip:")
    return [l.strip()[2:] for l in lines[i+1:] if l.strip().startswith("- ")]

def test_environment_matches_settings():
    s = _settings()
    want = shlex.split(s["requirements"]) + shlex.split(s["dev_requirements"])
    got = [p for p in _env_pip() if p != "-e ."]
    assert sorted(got) == sorted(want), set(got) ^ set(want)
    assert "-e ." in _env_pip()

def test_console_scripts_resolve():
    "Each console script's target exists; a `cutler_nb.cli` launcher leads to a real `call_parse` command."
    for line in _settings()["console_scripts"].split("\n"):
        if not line.strip(): continue
        name, target = (x.strip() for x in line.strip().split("="))
        mod, fn = target.split(":")
        ep = getattr(importlib.import_module(mod), fn)
        assert callable(ep), f"{name} -> {target} is not callable"
        real = ep.real() if mod == "cutler_nb.cli" else ep
        assert callable(real) and hasattr(real, "__wrapped__"), f"{name} -> {target}: not a call_parse command"

def test_sample_data_is_package_data():
    from cutler_nb.data import sample_dataset
    for n in ("coco_val_mini", "coco_train_mini"):
        s = sample_dataset(n)
        assert s.annotations.exists() and any(s.images.iterdir()) and (s.images.parent/"ATTRIBUTION.md").exists()
    assert "recursive-include cutler_nb/assets" in (ROOT/"MANIFEST.in").read_text()


FIGURE_CALL = re.compile(r"\b(plot_\w+|show_\w+|overlay_masks|imshow|plt\.subplots)\(")
SKIP_CELL = re.compile(r"^#\|\s*(export|exports|slow|gpu|hide|eval:\s*false)|plt\.close\(|save_figure\(", re.M)

def test_module_notebooks_committed_with_figures():
    "Module notebooks are committed executed: every plain cell that draws a figure (and does not close it) shows it."
    missing = []
    for f in sorted((ROOT/"nbs").glob("[0-9]*.ipynb")):
        for i, c in enumerate(json.loads(f.read_text())["cells"]):
            src = "".join(c["source"])
            if c["cell_type"] != "code" or SKIP_CELL.search(src) or not FIGURE_CALL.search(src): continue
            if not any("image/png" in o.get("data", {}) for o in c.get("outputs", [])): missing.append(f"{f.name} cell {i}")
    assert not missing, f"figure cells without their figure (execute the notebook, see CONTRIBUTING.md): {missing}"

def test_size_budget():
    "The repository stays small: each notebook under 1.5 MB, all tracked files under 40 MB."
    import subprocess
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True).stdout.split("\0")
    sizes = {f: (ROOT/f).stat().st_size for f in files if f and (ROOT/f).is_file()}
    big = {f: s for f, s in sizes.items() if f.endswith(".ipynb") and s > 1.5e6}
    assert not big, f"notebooks over 1.5 MB: {big}"
    assert sum(sizes.values()) < 40e6, f"tracked files total {sum(sizes.values()) / 1e6:.1f} MB"
