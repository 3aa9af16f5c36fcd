"""Console scripts: `--help` built from the source (no torch) equals the real `call_parse` help, for every command in
settings.ini; the launchers run the real command otherwise; a command added later needs only its settings.ini line."""
import configparser, importlib, inspect, json, os, subprocess, sys, textwrap, time
from pathlib import Path
import pytest
from fastcore.script import anno_parser
from cutler_nb import cli

ROOT = Path(__file__).resolve().parents[1]


def console_scripts() -> dict:
    "name → the real command's 'module:function', whether settings.ini points at a launcher or (older form) at the command."
    c = configparser.ConfigParser(delimiters=["="]); c.read(ROOT/"settings.ini")
    out = {}
    for line in c["DEFAULT"]["console_scripts"].split("\n"):
        if not line.strip(): continue
        name, target = (x.strip() for x in line.split("=", 1))
        mod, fn = target.split(":")
        out[name] = getattr(cli, fn).target if mod == "cutler_nb.cli" else target
    return out

SCRIPTS = console_scripts()


def _real(target):
    mod, fn = target.split(":")
    return getattr(importlib.import_module(mod), fn)


def _launch(attr_or_target, *args, env=None, prog="cutler-x"):
    "Run a launcher as the console-script wrapper does, in a fresh process; reports whether torch got imported."
    code = textwrap.dedent(f"""
        import sys, time, json
        from cutler_nb import cli
        sys.argv[0] = {prog!r}
        t = time.perf_counter(); a = {attr_or_target!r}
        launcher = cli.Launcher(a) if ":" in a else getattr(cli, a)
        try: rc = launcher()
        except SystemExit as e: rc = e.code
        heavy = [m for m in ("torch", "torchvision", "transformers", "timm", "matplotlib", "pycocotools") if m in sys.modules]
        print(json.dumps(dict(rc=rc, torch="torch" in sys.modules, heavy=heavy, s=time.perf_counter() - t)), file=sys.stderr)
        sys.exit(rc)""")
    r = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300,
                       env=dict(os.environ, HF_HUB_OFFLINE="1", MPLBACKEND="Agg", **(env or {})), cwd=ROOT)
    try: info = json.loads(r.stderr.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError): raise AssertionError(f"the launcher crashed:\n{r.stdout}\n{r.stderr}") from None
    return r, info


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_fast_help_equals_real_help(name):
    "The parser built from the source alone is the parser `call_parse` builds from the imported function."
    target = SCRIPTS[name]
    fast = cli.fast_parser(target, name).format_help()
    real = anno_parser(inspect.unwrap(_real(target)), name).format_help()
    assert fast == real


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_help_without_torch(name):
    "`<command> --help` through its launcher prints the real help without importing torch; timings are printed."
    target = SCRIPTS[name]
    t = time.perf_counter()
    r, info = _launch(target, "--help", prog=name)
    wall = time.perf_counter() - t
    print(f"{name} --help: {wall:.2f} s wall (process), {info['s']:.2f} s in the launcher")
    assert r.returncode == 0, r.stderr
    assert r.stdout == anno_parser(inspect.unwrap(_real(target)), name).format_help()
    assert not info["torch"], f"{name} --help imported torch"
    assert not info.get("heavy"), f"{name} --help imported {info.get('heavy')}"


def test_console_scripts_point_at_launchers():
    "Every console script goes through `cutler_nb.cli` (the fast-help launchers), so that no `--help` imports torch."
    c = configparser.ConfigParser(delimiters=["="]); c.read(ROOT/"settings.ini")
    targets = [l.split("=", 1)[1].strip() for l in c["DEFAULT"]["console_scripts"].split("\n") if l.strip()]
    assert targets and all(t.startswith("cutler_nb.cli:") for t in targets), targets


def test_launcher_runs_the_real_command(tmp_path):
    "Without --help the launcher runs the real command, with its one-line errors and exit status."
    r, info = _launch("evaluate__eval_cli", "--out", str(tmp_path/"o"), prog="cutler-eval")
    assert r.returncode == 1
    assert r.stderr.startswith("cutler-eval: error: need --gt GT.json"), r.stderr
    assert "Traceback" not in r.stderr


def test_new_command_needs_one_line():
    "Any `<module>__<function>` attribute is a launcher of `cutler_nb.<module>:<function>`: no list to update."
    assert cli.selftrain__filter_cli.target == "cutler_nb.selftrain:filter_cli"
    assert cli.groupvit_train__groupvit_train_cli.target == "cutler_nb.groupvit_train:groupvit_train_cli"
    with pytest.raises(AttributeError): cli.nounderscores
    with pytest.raises(AttributeError): cli.__nothing__


def test_fallback_to_the_real_help(tmp_path):
    "A default the source alone cannot compute (a call into numpy) makes the launcher import the real module; same help."
    (tmp_path/"probe_cli_mod.py").write_text(textwrap.dedent('''
        from __future__ import annotations
        import numpy as np
        from fastcore.script import call_parse
        @call_parse
        def probe(n:int=int(np.int64(3)), # how many
                  name:str="x", # a name
                 ):
            "A probe command."
            print(n, name)
        '''))
    sys.path.insert(0, str(tmp_path))
    try:
        with pytest.raises(cli.NeedsImport): cli.fast_parser("probe_cli_mod:probe", "probe")
        env = dict(PYTHONPATH=f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
        r, _ = _launch("probe_cli_mod:probe", "--help", env=env, prog="probe")
        assert r.returncode == 0 and "A probe command." in r.stdout and "how many (default: 3)" in r.stdout, r.stdout + r.stderr
        r, _ = _launch("probe_cli_mod:probe", "--n", "5", env=env, prog="probe")
        assert r.returncode == 0 and r.stdout.strip() == "5 x", r.stdout + r.stderr
    finally: sys.path.remove(str(tmp_path))
