"""The README's real path, run as written: every `aiiscan` line of its "real path" block.

The photos and data sets the block names are made here; `train` gets a tiny random-init backbone
appended (the default ViT-L-14 cannot be downloaded here), which changes nothing else about the
commands. The set-up commands themselves are run by `.ci/run`, each in a fresh venv.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from aiiscan.models.backbone import TINY_CONFIG
from aiiscan.reports.read import read_report

from ..conftest import write_photos

README = Path(__file__).resolve().parents[2] / "README.md"
TINY = f" --backbone {TINY_CONFIG} --pretrained none --epochs 1 --views 1 --batch-size 8 --workers 0"


def real_path_commands() -> list[str]:
    text = README.read_text()
    section = text.split("## The real path", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [line for line in block.splitlines() if line.startswith("aiiscan ")]


def test_the_real_path_block_names_the_whole_workflow():
    verbs = [c.split()[1] for c in real_path_commands()]
    assert verbs[:1] == ["train"] and {"calibrate", "scan", "report", "evaluate"} <= set(verbs)
    assert "aiiscan scan ./photos -o report.parquet" in real_path_commands()  # the design brief's


def test_readme_real_path_runs_as_written(tmp_path):
    bin_dir = Path(sys.executable).parent
    if not (bin_dir / "aiiscan").is_file() and not shutil.which("aiiscan"):
        pytest.skip("the aiiscan command is not installed")
    home = tmp_path / "home"
    write_photos(home / "photos" / "authentic", 12, seed=31)
    write_photos(home / "photos" / "held-out", 4, seed=32)
    write_photos(home / "photos" / "calibration", 6, seed=33)
    desk = tmp_path / "desk"  # where the user runs the commands: ./photos is the folder to scan
    write_photos(desk / "photos", 3, seed=34)
    (desk / "files.txt").write_text("".join(f"{p}\n" for p in sorted((desk / "photos").glob("*.png"))))
    for label, seed in (("0_real", 35), ("1_fake", 36)):
        write_photos(home / "benchmarks" / "univfd" / "gen" / label, 3, seed=seed)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIISCAN_")}
    env |= {"HOME": str(home), "XDG_DATA_HOME": str(home / ".local" / "share"),
            "PATH": f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"}
    for command in real_path_commands():
        line = command.split("  #", 1)[0].rstrip()
        if line.startswith("aiiscan train "):
            line += TINY
        elif line.split()[1] in ("scan", "calibrate", "evaluate"):
            line += " --workers 0"
        proc = subprocess.run(["bash", "-c", line], cwd=desk, env=env, capture_output=True, text=True,
                              timeout=600)
        assert proc.returncode in (0, 3), f"{line}\n{proc.stdout}\n{proc.stderr}"
        assert "Traceback" not in proc.stderr, line
    assert (home / ".local" / "share" / "aiiscan" / "weights" / "default.link").is_file()
    rows = read_report(desk / "report.parquet")
    assert len(rows) == 3 and set(rows.column("label").to_pylist()) <= {"ai", "natural"}
    assert None not in rows.column("label").to_pylist()  # calibrated: every row is labelled
    assert (desk / "report.html").is_file() and (desk / "table.md").is_file()
    assert len(read_report(desk / "report.csv")) == 3


# ---- the README is a guide; the reference is in docs/, and every command either place names parses

DOCS = sorted((README.parent / "docs").glob("*.md"))
README_MAX_BYTES = 20 * 1024


def test_the_readme_is_a_guide_under_20_kb():
    assert len(README.read_bytes()) < README_MAX_BYTES
    text = README.read_text()
    for section in ("## Set up", "## The real path", "## Evidence and verdicts", "## Conventions",
                    "## Where to read more"):
        assert section in text, section


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _links(path: Path) -> list[tuple[str, str]]:
    """(target, anchor) of every relative Markdown link in ``path``."""
    found = re.findall(r"\]\(([^)\s]+)\)", path.read_text())
    return [tuple((t.split("#", 1) + [""])[:2]) for t in found if "://" not in t and not t.startswith("#")]


@pytest.mark.parametrize("page", [README, *DOCS], ids=lambda p: p.name)
def test_every_relative_link_and_anchor_resolves(page):
    for target, anchor in _links(page):
        resolved = (page.parent / target).resolve()
        assert resolved.exists(), f"{page.name}: {target}"
        if anchor:
            headings = re.findall(r"^#+ (.*)$", resolved.read_text(), re.M)
            assert anchor in {_slug(h) for h in headings}, f"{page.name}: {target}#{anchor}"


def test_the_readme_links_every_doc():
    linked = {(README.parent / t).resolve() for t, _ in _links(README)}
    assert {d.resolve() for d in DOCS} <= linked, "a docs/*.md page the README's 'Where to read more' misses"


def _documented_commands() -> list[tuple[str, str]]:
    """(page, command) for every `aiiscan` or `pip install` line of a ```bash block in the README
    and docs/, continuation lines joined, comments and leading VAR=value settings dropped."""
    out = []
    for page in (README, *DOCS):
        for block in re.findall(r"```bash\n(.*?)```", page.read_text(), re.S):
            for line in block.replace("\\\n", " ").splitlines():
                line = re.sub(r"^(\w+=\S+ )+", "", line.split("  #", 1)[0].strip())
                if line.startswith(("aiiscan ", "pip install ")):
                    out.append((page.name, line))
    return out


def test_every_documented_command_names_real_options():
    """The commands outside the real path (buckets, Ray, MPFT, multi-head) need machines and data
    a test does not have; each is checked against the CLI instead: its command exists, every
    option it names is one of that command's, and every value of a choice is a choice."""
    import click
    import tomllib

    from aiiscan.cli import main

    extras = set(tomllib.loads((README.parent / "pyproject.toml").read_text())["project"]
                 ["optional-dependencies"])
    commands = _documented_commands()
    assert len(commands) >= 20 and {p for p, _ in commands} >= {"README.md", "cli.md", "archives.md"}
    for page, line in commands:
        words = shlex.split(line)
        if words[0] == "pip":
            for word in words[2:]:
                if word.startswith("aiiscan["):
                    assert set(word[8:-1].split(",")) <= extras, f"{page}: {line}"
            continue
        command = main.commands.get(words[1])
        assert command is not None, f"{page}: {line}"
        params = {name: p for p in command.params for name in (*p.opts, *p.secondary_opts)}
        for i, word in enumerate(words[2:], start=2):
            if not word.startswith("-") or word == "-":
                continue
            name, _, value = word.partition("=")
            assert name in params, f"{page}: {name} is no option of 'aiiscan {words[1]}': {line}"
            param = params[name]
            if isinstance(param.type, click.Choice) and not param.is_flag:
                value = value or words[i + 1]
                assert value in param.type.choices, f"{page}: {name} {value}: {line}"
