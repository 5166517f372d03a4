"""The ingest side (crawl, decode, provenance, worker pool, reports, the CLI's front door) never
imports torch: decode workers stay small and `aiiscan --help` or `aiiscan report` start fast."""

import subprocess
import sys

TORCH_FREE = ["aiiscan.cli", "aiiscan.report", "aiiscan.htmlreport", "aiiscan.decode", "aiiscan.pipeline",
              "aiiscan.sources", "aiiscan.provenance", "aiiscan.preprocess", "aiiscan.proxies",
              "aiiscan.launder", "aiiscan.outputs", "aiiscan.files", "aiiscan.progress", "aiiscan.errors",
              "aiiscan.defaults", "aiiscan.ray_engine"]  # ray_engine: what Ray's decode tasks import


def test_ingest_side_imports_no_torch():
    code = ("import importlib, sys\n"
            f"for name in {TORCH_FREE!r}:\n"
            "    importlib.import_module(name)\n"
            "heavy = [m for m in ('torch', 'open_clip', 'safetensors', 'torchvision') if m in sys.modules]\n"
            "print(','.join(heavy))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "", f"torch-free modules loaded {proc.stdout.strip()}"


def test_help_and_report_help_do_not_load_the_model_stack():
    code = ("import sys\nfrom click.testing import CliRunner\nfrom aiiscan.cli import main\n"
            "for args in (['--help'], ['report', '--help'], ['scan', '--help']):\n"
            "    assert CliRunner().invoke(main, args).exit_code == 0\n"
            "print('torch' in sys.modules)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "False", proc.stderr
