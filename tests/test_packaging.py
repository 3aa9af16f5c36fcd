"Packaging contracts: one dependency set, console scripts that resolve, package data present."
import configparser, importlib, shlex
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


# Notebook outputs and the size budget: tests/test_notebooks.py (one home).
