"""The committed notebooks read as documents: module notebooks carry the outputs of their figure cells, without
errors or execution-count noise; experiment notebooks stay stripped; the repository stays small.

A *figure cell* is a code cell of a module notebook (`nbs/*.ipynb`) that
- calls a drawing function: `plt.subplots(`/`plt.figure(`/`plt.imshow(`/... or any `show_*(`, `plot_*(`,
  `overlay_masks(`, `heatmap(` (definitions `def plot_x(` do not count),
- is not an `#| export` cell (those define, they do not draw),
- is not tagged `#| slow`, `#| gpu`, `#| notest` or `#| eval: false` (those stay unexecuted, see
  `tools/run_notebooks.py`),
- and does not close what it drew (`plt.close(`, or `save_figure(` without `close=False`): a test that saves a
  figure to check the file has nothing left to show.
Each figure cell must have at least one `image/png` output.
"""
import json, os, re, subprocess
from pathlib import Path
import pytest

REPO = Path(__file__).resolve().parents[1]
NBS = REPO/"nbs"
MODULE_NBS = sorted(NBS.glob("*.ipynb"))
EXPERIMENT_NBS = sorted((NBS/"experiments").glob("*.ipynb"))

# Size budgets. Today (Dec 2026) the tracked tree is ~8.5 MB, 7.3 MB of it the bundled COCO photos
# (`cutler_nb/assets`); thirteen executed module notebooks at a few hundred kB each add ~4 MB. 40 MB leaves room
# for that, a few more notebooks and sample images, while catching what must not be committed: a checkpoint
# (a DINO ViT-S is 85 MB), a run folder of `outputs/`, a data set. One notebook may hold a handful of figures
# at 72 dpi (~100-300 kB each as PNG); 1.5 MB means a figure too large, too many, or a big array printed.
REPO_BUDGET = 40_000_000
NOTEBOOK_BUDGET = 1_500_000

_DIRECTIVE = re.compile(r"^\s*#\s*\|\s*(.*?)\s*$")
_DRAWS = re.compile(r"\bplt\.(subplots|subplot|figure|imshow|matshow|plot|scatter|bar|hist|show|pcolormesh|contourf?)\s*\("
                    r"|(?<!def )(?<![\w.])_*(show_\w+|plot_\w+|overlay_masks|heatmap)\s*\(")
_CLOSES = re.compile(r"\bplt\.close\s*\(|\bsave_figure\s*\((?![^\n]*close\s*=\s*False)")
SKIP = {"slow", "gpu", "notest", "eval:false"}

def directives(src:str) -> set:
    "The `#| ...` directives at the top of a cell, lower case without spaces (`eval: false` -> `eval:false`)."
    out = set()
    for line in src.splitlines():
        m = _DIRECTIVE.match(line)
        if not m: break
        out.add(m.group(1).lower().replace(" ", ""))
    return out

def _src(cell) -> str: return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]

def is_figure_cell(cell) -> bool:
    if cell["cell_type"] != "code": return False
    src = _src(cell); ds = directives(src)
    if ds & SKIP or "export" in ds or "exports" in ds: return False
    code = "\n".join(l for l in src.splitlines() if not l.lstrip().startswith("#"))
    return bool(_DRAWS.search(code)) and not _CLOSES.search(code)

def has_png(cell) -> bool: return any("image/png" in o.get("data", {}) for o in cell.get("outputs", []))

def load(p:Path) -> dict: return json.loads(p.read_text(encoding="utf-8"))

def _id(p): return p.stem

def test_figure_cell_definition():
    "The rule itself, on crafted cells: it must be able to say yes and no."
    def cell(src, outputs=()): return dict(cell_type="code", source=src, outputs=list(outputs), metadata={})
    assert is_figure_cell(cell("fig = show_grid([img])"))
    assert is_figure_cell(cell("fig, ax = plt.subplots()\nax.plot([1, 2])"))
    assert is_figure_cell(cell("plot_correspondences(a, b, c)")) and is_figure_cell(cell("_show_grid([img])"))
    for no in ("#| export\ndef plot_histograms(tab):\n    fig, ax = plt.subplots()", "def _plot_one(ax): ax.imshow(img)", "#| slow\nshow_grid([img])",
               "#| eval: false\nheatmap(img, h)", "import matplotlib.pyplot as plt\nplt.rcParams['figure.dpi'] = 72",
               "save_figure(plot_histograms(tab), p)", "ax = overlay_masks(img, ms)\nplt.close(ax.figure)", "x = 1"):
        assert not is_figure_cell(cell(no)), no
    assert is_figure_cell(cell("save_figure(fig := plot_separability(tab), p, close=False)"))
    png = dict(output_type="display_data", data={"image/png": "iVBOR", "text/plain": "<Figure>"}, metadata={})
    assert has_png(cell("show_grid([img])", [png])) and not has_png(cell("show_grid([img])"))

@pytest.mark.parametrize("nb", MODULE_NBS, ids=_id)
def test_figure_cells_have_outputs(nb):
    "Executed and committed with outputs: every figure cell shows its figure (run tools/run_notebooks.py)."
    missing = [i for i, c in enumerate(load(nb)["cells"]) if is_figure_cell(c) and not has_png(c)]
    assert not missing, (f"{nb.name}: figure cells {missing} have no image/png output; execute it in place with "
                         f"`.venv/bin/python tools/run_notebooks.py --only {nb.stem}`")

@pytest.mark.parametrize("nb", MODULE_NBS, ids=_id)
def test_outputs_clean(nb):
    "No error outputs or tracebacks, no execution counts, no progress bars, machine paths or widget views (random ids), no skipped cell run."
    problems = []
    for i, c in enumerate(load(nb)["cells"]):
        if c["cell_type"] != "code": continue
        if c.get("execution_count") is not None: problems.append(f"cell {i}: execution_count {c['execution_count']}")
        if directives(_src(c)) & SKIP and c.get("outputs"): problems.append(f"cell {i}: a slow/gpu/notest cell has outputs")
        for o in c.get("outputs", []):
            if o["output_type"] == "error": problems.append(f"cell {i}: error output {o.get('ename')}: {o.get('evalue', '')[:80]}")
            if o.get("execution_count") is not None: problems.append(f"cell {i}: output execution_count {o['execution_count']}")
            text = "".join(o.get("text", "")) + "".join(o.get("data", {}).get("text/plain", ""))
            if "Traceback (most recent call last)" in text: problems.append(f"cell {i}: a traceback in a {o['output_type']} output")
            if re.search(r"\d+(\.\d+)?(it/s|s/it)\]", text): problems.append(f"cell {i}: a progress bar (timings change every run)")
            if "site-packages" in text or str(REPO) in text or re.search(r"/tmp/tmp\w{8}", text): problems.append(f"cell {i}: a path of the machine that ran it (warning noise?)")
            if "application/vnd.jupyter.widget-view+json" in o.get("data", {}): problems.append(f"cell {i}: a widget output (use progress=False)")
    assert not problems, f"{nb.name}: " + "; ".join(problems)

@pytest.mark.parametrize("nb", EXPERIMENT_NBS, ids=_id)
def test_experiments_stripped(nb):
    "Experiment notebooks are committed without outputs: papermill writes the executed copies into outputs/."
    ran = [i for i, c in enumerate(load(nb)["cells"]) if c["cell_type"] == "code" and (c.get("outputs") or c.get("execution_count"))]
    assert not ran, f"{nb.name}: cells {ran} have outputs or execution counts; run nbdev_clean with clear_all"

def committed_files() -> list[Path]:
    "The files git would commit: tracked ones plus untracked ones not ignored (so a new file counts before `git add`)."
    try: out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                              capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError): pytest.skip("not a git checkout")
    return [REPO/f for f in sorted(set(out.decode().split("\0"))) if f and (REPO/f).is_file()]

def test_repository_size():
    "The repository stays under its size budget, and so does each module notebook."
    files = committed_files()
    total = sum(f.stat().st_size for f in files)
    biggest = sorted(files, key=lambda f: -f.stat().st_size)[:5]
    assert total <= REPO_BUDGET, (f"the repository holds {total / 1e6:.1f} MB > {REPO_BUDGET / 1e6:.0f} MB; largest: "
                                  + ", ".join(f"{f.relative_to(REPO)} {f.stat().st_size / 1e6:.1f} MB" for f in biggest))
    big = {nb.name: nb.stat().st_size for nb in MODULE_NBS if nb.stat().st_size > NOTEBOOK_BUDGET}
    assert not big, f"notebooks over {NOTEBOOK_BUDGET / 1e6} MB (smaller figures, dpi 72, no printed arrays): {big}"
