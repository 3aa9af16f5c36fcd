#!/usr/bin/env python
"""Execute the module notebooks in place, with their outputs, then strip their metadata with `nbdev_clean`.

    .venv/bin/python tools/run_notebooks.py                       # every module notebook in nbs/, in numbering order
    .venv/bin/python tools/run_notebooks.py --only 02_features,04_ncut --timeout 600

Cells tagged `#| slow`, `#| gpu`, `#| notest` or `#| eval: false` are not run and keep no output (their prose says
so). The kernel runs offline (`HF_HUB_OFFLINE=1`, `CUTLER_NB_OFFLINE=1`) with matplotlib's inline backend, so that
figures land in the notebook as PNG even when the caller exported `MPLBACKEND=Agg`. A notebook that fails is left
as it was (the executed copy is only written on success); the exit status is 1 when any failed.
Experiment notebooks (`nbs/experiments/`) are committed stripped and are not run here.
"""
from __future__ import annotations
import os, re, subprocess, sys, time
from pathlib import Path
import nbformat
from fastcore.script import call_parse
from nbconvert.preprocessors import ExecutePreprocessor

REPO = Path(__file__).resolve().parents[1]
NBS = REPO/"nbs"
SKIP_FLAGS = ("slow", "gpu", "notest")
_DIRECTIVE = re.compile(r"^\s*#\s*\|\s*(.*?)\s*$")

def skipped(source:str) -> bool:
    "Whether a code cell's leading `#|` directives say it must not run here (slow, gpu, notest, eval: false)."
    for line in source.splitlines():
        m = _DIRECTIVE.match(line)
        if not m: break
        d = m.group(1).lower().replace(" ", "")
        if d in SKIP_FLAGS or d == "eval:false": return True
    return False

class _SkipExecute(ExecutePreprocessor):
    "nbconvert's executor, leaving the flagged cells unexecuted and without outputs."
    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type == "code" and skipped(cell.source):
            cell.outputs, cell.execution_count = [], None
            return cell, resources
        return super().preprocess_cell(cell, resources, index)

def module_notebooks(only:str|None=None) -> list[Path]:
    "The module notebooks of `nbs/` (not `nbs/experiments/`) in numbering order, optionally restricted by stem."
    nbs = sorted(NBS.glob("*.ipynb"))
    if not only: return nbs
    want = [s.strip().removesuffix(".ipynb") for s in only.split(",") if s.strip()]
    by = {p.stem: p for p in nbs}
    unknown = [w for w in want if w not in by]
    if unknown: raise SystemExit(f"run_notebooks: no module notebook {', '.join(unknown)} in {NBS} (have: {', '.join(by)})")
    return [by[w] for w in sorted(want)]

def _kernel_env() -> dict:
    # tqdm.auto warns (with this machine's site-packages path) when ipywidgets is missing: noise in a committed output
    warn = ",".join(w for w in (os.environ.get("PYTHONWARNINGS"), "ignore:IProgress not found") if w)
    return dict(os.environ, HF_HUB_OFFLINE="1", CUTLER_NB_OFFLINE="1", PYTHONHASHSEED="0", PYTHONWARNINGS=warn,
                MPLBACKEND="module://matplotlib_inline.backend_inline")

def run_notebook(path:Path, timeout:int=900) -> float:
    "Execute `path` in place (from its folder) and clean it; returns the seconds taken. Raises on a failing cell."
    nb = nbformat.read(path, as_version=4)
    t0 = time.perf_counter()
    old = dict(os.environ); os.environ.update(_kernel_env())   # the kernel inherits this process's environment
    try: _SkipExecute(timeout=timeout, kernel_name="python3").preprocess(nb, {"metadata": {"path": str(path.parent)}})
    finally: os.environ.clear(); os.environ.update(old)
    tmp = path.with_suffix(".ipynb.tmp"); nbformat.write(nb, tmp); os.replace(tmp, path)
    clean = Path(sys.executable).parent/"nbdev_clean"
    subprocess.run([str(clean) if clean.exists() else "nbdev_clean", "--fname", str(path)], cwd=REPO, check=True)
    return time.perf_counter() - t0

@call_parse
def main(only:str=None, # comma-separated notebook stems, e.g. "02_features,04_ncut" (default: all module notebooks)
         timeout:int=900, # seconds allowed per cell
        ):
    "Execute the module notebooks in place with their outputs, in numbering order, and report time and failures."
    failed = []
    for p in module_notebooks(only):
        print(f"{p.name:28s} ", end="", flush=True)
        try: dt = run_notebook(p, timeout)
        except Exception as e:
            # a failing cell raises CellExecutionError, whose ename/evalue are the notebook's own error
            what = f"{getattr(e, 'ename', type(e).__name__)}: {getattr(e, 'evalue', str(e).strip().splitlines()[-1:])}"
            print(f"FAILED ({what[:300]})", flush=True); failed.append(p.name); continue
        print(f"{dt:6.1f} s  {p.stat().st_size / 1e6:.2f} MB", flush=True)
    if failed:
        print(f"{len(failed)} notebook(s) failed: {', '.join(failed)} (left unchanged)"); sys.exit(1)
