"""The house shows its design, and keeps it: packages by stage, no import cycle, short functions,
and the ingest side (inputs, decode, reports, the scan driver, the engines' front, the CLI, the
card) free of torch, so decode workers stay small and every ``--help`` starts fast."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "aiiscan"
TORCH_FREE_PACKAGES = ("inputs", "decode", "reports", "scanner", "engines", "cli")
TORCH_FREE_MODULES = ("aiiscan", "aiiscan.api", "aiiscan.card", "aiiscan.errors", "aiiscan.files",
                      "aiiscan.options", "aiiscan.progress", "aiiscan.signals", "aiiscan.textsafe",
                      "aiiscan.version", "aiiscan.models", "aiiscan.models.kinds", "aiiscan.models.installed",
                      "aiiscan.models.kinds.flow", "aiiscan.models.kinds.mpft", "aiiscan.tasks.datasets",
                      "aiiscan.tasks.metrics", "aiiscan.tasks.plots", "aiiscan.models.about")


def _name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_name(p): p for p in PACKAGE.rglob("*.py")}


def _imports(name: str, path: Path) -> set[str]:
    """The aiiscan modules ``name`` imports, in-function imports included, ``TYPE_CHECKING``
    blocks excluded. Importing a module imports its packages too, except the importer's own
    ancestors, which are always loaded first."""
    tree = ast.parse(path.read_text())
    typing_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
                   and "TYPE_CHECKING" in ast.unparse(node.test) for n in ast.walk(node)}
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        targets = []
        if isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, node.module] if node.module else base)
            targets = [module, *(f"{module}.{a.name}" for a in node.names)]
        elif isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        for target in targets:
            parts = target.split(".")
            for i in range(1, len(parts) + 1):
                prefix = ".".join(parts[:i])
                if prefix in MODULES and prefix != name and not name.startswith(prefix + "."):
                    found.add(prefix)
    return found


def test_no_import_cycle_between_modules():
    """The root ``aiiscan/__init__.py`` (the lazy front door) is left out: it imports on use."""
    graph = {n: _imports(n, p) - {"aiiscan"} for n, p in MODULES.items() if n != "aiiscan"}
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not cycles, cycles


def test_the_top_level_holds_at_most_twelve_modules():
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= 12, top
    stages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    assert {"inputs", "decode", "reports", "models", "engines", "scanner", "tasks", "cli"} <= stages


def test_functions_are_short_and_the_scan_driver_only_orchestrates():
    long = []
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > 120 or (node.name == "run_scan" and length > 80):
                    long.append(f"{name}.{node.name}: {length} lines")
    assert not long, long


def test_only_the_inputs_package_reads_names_for_url_or_member_syntax():
    """A location is typed where it enters (``inputs.parse``, a listing); nothing else may tell
    kinds of input apart by ``://`` or ``::`` in a string."""
    found = []
    for name, path in MODULES.items():
        if name.startswith("aiiscan.inputs"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and node.value in ("://", "::"):
                found.append(f"{name}:{node.lineno}")
    assert not found, found


def _torch_free() -> list[str]:
    names = [n for n in MODULES if any(n == f"aiiscan.{p}" or n.startswith(f"aiiscan.{p}.")
                                       for p in TORCH_FREE_PACKAGES)]
    return sorted({*names, *TORCH_FREE_MODULES})


def test_the_ingest_side_imports_no_torch():
    code = ("import importlib, sys\n"
            f"for name in {_torch_free()!r}:\n"
            "    importlib.import_module(name)\n"
            "heavy = [m for m in ('torch', 'open_clip', 'safetensors', 'torchvision') if m in sys.modules]\n"
            "print(','.join(heavy))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "", f"torch-free modules loaded {proc.stdout.strip()}"


def test_no_help_loads_the_model_stack():
    code = ("import sys\nfrom click.testing import CliRunner\nfrom aiiscan.cli import main\n"
            "for args in [['--help'], *([name, '--help'] for name in main.commands)]:\n"
            "    assert CliRunner().invoke(main, args).exit_code == 0, args\n"
            "print('torch' in sys.modules)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "False", proc.stderr


@pytest.mark.parametrize("cls_name", ["ScanOptions", "TrainOptions", "FinetuneOptions", "CalibrateOptions",
                                      "EvaluateOptions", "PageOptions"])
def test_every_option_of_a_command_is_its_options_field_with_the_same_default(cls_name):
    """The CLI's options are generated from the typed options, so their defaults cannot drift."""
    import click

    from aiiscan import options
    from aiiscan.cli import main
    from aiiscan.options import param

    command = {"ScanOptions": "scan", "TrainOptions": "train", "FinetuneOptions": "finetune",
               "CalibrateOptions": "calibrate", "EvaluateOptions": "evaluate",
               "PageOptions": "report"}[cls_name]
    params = {p.name: p for p in main.commands[command].params if isinstance(p, click.Option)}

    def check(cls):
        from dataclasses import MISSING, fields
        for f in fields(cls):
            # --weights, -q and --progress/--no-progress are every command's own (cli.common)
            if f.metadata.get("cli") is False or param(f) in ("weights", "quiet", "progress"):
                continue
            if "nested" in f.metadata:
                check(f.metadata["nested"])
                continue
            option = params[param(f)]
            want = None if f.default is MISSING else f.default
            if f.metadata.get("negate"):
                assert option.default is True and want is True, f.name
            elif isinstance(want, tuple):
                assert tuple(option.default or ()) == want, f.name
            else:
                assert option.default == want, f.name
    check(getattr(options, cls_name))
