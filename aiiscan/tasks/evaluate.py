"""Per-generator tables in the layout of the paper's Tables I and II (AP, AUC, accuracies).

Scores come from the scorer's ``score_stream``, the scan's own decode-and-score loop. Each file is
scored once per condition even when several generators share it (a shared real pool). Several
heads are scored from the same decode and shown side by side
(``evaluate_heads``, ``to_markdown_heads``).
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..decode.job import DecodeJob
from ..decode.launder import Condition
from ..models import ScorerLike
from ..progress import bar
from ..scanner.rows import facts, label
from ..scanner.verdict import decide
from . import plots
from .datasets import EvalSet
from .metrics import average_precision, check_threshold, rates_at, roc_auc

METRICS = ("ap", "auc", "acc", "real_acc", "fake_acc", "coverage", "decided_acc", "flip_rate")


@dataclass
class Row:
    generator: str
    n_real: int
    n_fake: int
    ap: float
    auc: float
    acc: float | None
    real_acc: float | None
    fake_acc: float | None
    # The file's verdict (scanner.verdict: its evidence and every head's label): the share of files
    # with one decided (ai or natural), the accuracy on those, and the share whose verdict differs
    # from the one as is (None for the table as is).
    coverage: float | None = None
    decided_acc: float | None = None
    flip_rate: float | None = None


@dataclass
class Table:
    condition: str  # "none" or e.g. "jpeg:90"
    threshold: float | None
    rows: list[Row]
    failed: list[tuple[str, str]] = field(default_factory=list)
    scores: dict[str, float] = field(default_factory=dict)
    n_real: int = 0  # distinct files (a shared real pool counts once)
    n_fake: int = 0
    trained_on: int = 0  # scored files whose content the head's card lists among its training images

    def warning(self) -> str | None:
        if not self.trained_on:
            return None
        return (f"warning: {self.trained_on} of these images were used to train this head (their content "
                "is in its card's training fingerprints): its figures on them flatter it")

    def mean(self) -> Row:
        def avg(key: str) -> float | None:
            vals = [getattr(r, key) for r in self.rows]
            return None if any(v is None for v in vals) else float(np.mean(vals))

        return Row("mean", self.n_real, self.n_fake, *(avg(k) for k in METRICS))


def score_heads(detector: ScorerLike, paths: Sequence[str], condition: Condition | None = None,
                batch_size: int = 64, workers: int | None = None, progress: bool = True,
                exact_decode: bool = False, fingerprints: dict[str, str] | None = None,
                evidence: dict[str, dict] | None = None,
                ) -> list[tuple[dict[str, float], list[tuple[str, str]]]]:
    """Per head of ``detector``: (scores by path, failed files), from one decode per file;
    ``fingerprints`` receives each decoded file's sha256[:16]; ``evidence`` (given: collected, as
    a scan does) each decoded file's evidence columns, for its verdict."""
    fingerprints = {} if fingerprints is None else fingerprints
    size = detector.image_size
    collect = evidence is not None
    jobs = (DecodeJob(p, size, condition=condition, fast_decode=not exact_decode, provenance=collect,
                      watermark=collect) for p in paths)
    n = len(detector.heads)
    per_head: list[tuple[dict[str, float], list[tuple[str, str]]]] = [({}, []) for _ in range(n)]
    stream = detector.score_stream(jobs, batch_size=batch_size, workers=workers)
    for res, s in bar(stream, total=len(paths), unit="img", show=progress,
                      desc=f"evaluate ({condition or 'as is'})"):
        values = [None] * n if s is None else s[0]  # the original's score, one per head
        for (scores, failed), v in zip(per_head, values, strict=True):
            if v is None or not np.isfinite(v):
                failed.append((res.path, res.error or "non-finite score"))
            else:
                scores[res.path] = float(v)
        if s is not None and res.info.get("sha256"):
            fingerprints[res.path] = res.info["sha256"][:16]
        if s is not None and collect:
            evidence[res.path] = facts(res)
    return per_head


def file_verdicts(per_head: Sequence[tuple[dict[str, float], list]], thresholds: Sequence[float | None],
                  evidence: dict[str, dict]) -> dict[str, str | None]:
    """Each file's verdict (``scanner.verdict``, ``--combine any``) from its evidence and every
    head's label; files some head could not score have none."""
    out = {}
    for path, row in evidence.items():
        scores = [scores.get(path) for scores, _ in per_head]
        if all(s is not None for s in scores):
            out[path] = decide(row, [label(s, t) for s, t in zip(scores, thresholds, strict=True)])[0]
    return out


def _verdict_rates(paths: Sequence[str], fake: bool, verdicts: dict[str, str | None],
                   base: dict[str, str | None] | None) -> tuple[int, int, int, int]:
    """(files with a verdict, decided, decided right, flipped from ``base``)."""
    files = [p for p in paths if p in verdicts]
    decided = [p for p in files if verdicts[p] in ("ai", "natural")]
    right = sum((verdicts[p] == "ai") == fake for p in decided)
    flipped = sum(base is not None and p in base and base[p] != verdicts[p] for p in files)
    return len(files), len(decided), right, flipped


def _table(evalset: EvalSet, cond: Condition | None, thr: float | None, scores: dict[str, float],
           failed: list[tuple[str, str]], trained_on: int = 0, verdicts: dict[str, str | None] | None = None,
           base: dict[str, str | None] | None = None) -> Table:
    rows = []
    for gen, reals, fakes in evalset.groups():
        neg = np.array([scores[p] for p in reals if p in scores])
        pos = np.array([scores[p] for p in fakes if p in scores])
        if len(neg) == 0 or len(pos) == 0:
            continue  # every file of one side failed; listed in ``failed``
        acc = rates_at(neg, pos, thr) if thr is not None else None
        row = Row(gen, len(neg), len(pos), average_precision(neg, pos), roc_auc(neg, pos),
                  acc and acc.accuracy, acc and acc.real_accuracy, acc and acc.fake_accuracy)
        if verdicts is not None:
            both = zip(_verdict_rates(reals, False, verdicts, base),
                       _verdict_rates(fakes, True, verdicts, base), strict=True)
            n, decided, right, flipped = map(sum, both)
            row.coverage = decided / n if n else None
            row.decided_acc = right / decided if decided else None
            row.flip_rate = flipped / n if n and base is not None else None
        rows.append(row)
    used_reals = {p for _, reals, _ in evalset.groups() for p in reals if p in scores}
    used_fakes = {p for _, _, fakes in evalset.groups() for p in fakes if p in scores}
    return Table(str(cond) if cond else "none", thr, rows, failed, scores, len(used_reals), len(used_fakes),
                 trained_on)


def evaluate(detector: ScorerLike, evalset: EvalSet, conditions: Sequence[Condition | None] = (None,),
             threshold: float | None = None, *, batch_size: int = 64, workers: int | None = None,
             progress: bool = True, exact_decode: bool = False) -> list[Table]:
    """One table per condition; accuracies need a threshold (the card's, or ``threshold``)."""
    return evaluate_heads(detector, evalset, conditions, threshold, batch_size=batch_size, workers=workers,
                          progress=progress, exact_decode=exact_decode)[0]


def evaluate_heads(detector: ScorerLike, evalset: EvalSet, conditions: Sequence[Condition | None] = (None,),
                   threshold: float | None = None, *, batch_size: int = 64, workers: int | None = None,
                   progress: bool = True, exact_decode: bool = False) -> list[list[Table]]:
    """``evaluate`` for every head of ``detector``, one decode per file for all:
    ``[head][condition]``. ``threshold`` is head 1's; the other heads use their cards'."""
    heads = detector.heads
    thrs = [detector.card.threshold_value if threshold is None else check_threshold(threshold),
            *(h.card.threshold_value for h in heads[1:])]
    files = evalset.files()
    trained = [set(h.card.trained_on()) for h in heads]
    out: list[list[Table]] = [[] for _ in heads]
    base = None  # the verdicts as is, which each condition's flip
    for cond in conditions:
        shas: dict[str, str] = {}
        evidence: dict[str, dict] = {}
        per_head = score_heads(detector, files, cond, batch_size, workers, progress, exact_decode, shas,
                               evidence)
        verdicts = file_verdicts(per_head, thrs, evidence)
        if cond is None:
            base = verdicts
        for k, (scores, failed) in enumerate(per_head):
            seen = sum(shas.get(p) in trained[k] for p in scores)
            out[k].append(_table(evalset, cond, thrs[k], scores, failed, seen, verdicts,
                                 base if cond is not None else None))
    return out


VERDICT_NOTE = ("Decided = files whose verdict (evidence and every head's label, docs/verdicts.md) is ai or "
                "natural, Decided Acc = right among them, Flipped = verdict differs from the one as is.")


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.1f}"


def to_markdown(tables: Sequence[Table], title: str, caveat: str | None = None) -> str:
    out = [f"# {title}", ""]
    if caveat:
        out += [f"> {caveat}", ""]
    for t in tables:
        out.append(f"## Condition: {t.condition}")
        out.append("")
        thr = ("none (accuracies need `aiiscan calibrate` or --threshold)" if t.threshold is None
               else f"{t.threshold:.6g}")
        out.append(f"Threshold: {thr}; {len(t.failed)} files failed to decode.")
        out.append("")
        if t.warning():
            out += [f"**{t.warning()}**", ""]
        out.append("| generator | real | fake | AP | AUC | Acc | Real Acc | Fake Acc | Decided | Decided Acc "
                   "| Flipped |")
        out.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        mean = t.mean()
        for r in [*t.rows, mean]:
            name = "**mean**" if r is mean else r.generator.replace("|", "\\|")
            out.append(f"| {name} | {r.n_real} | {r.n_fake} | {_pct(r.ap)} | {_pct(r.auc)} | "
                       f"{_pct(r.acc)} | {_pct(r.real_acc)} | {_pct(r.fake_acc)} | {_pct(r.coverage)} | "
                       f"{_pct(r.decided_acc)} | {_pct(r.flip_rate)} |")
        out.append("")
        out.append("AP and AUC in %; Acc over all images, Real Acc = real kept, Fake Acc = fake flagged; "
                   "the mean row averages generators and counts distinct files. " + VERDICT_NOTE)
        out.append("")
    return "\n".join(out)


def to_markdown_heads(per_head: Sequence[Sequence[Table]], names: Sequence[str], title: str,
                      caveat: str | None = None) -> str:
    """Several heads side by side: per condition, one row per generator with each head's AP,
    AUC and accuracy (``h1``, ``h2``...: the heads in the order given)."""
    out = [f"# {title}", ""]
    if caveat:
        out += [f"> {caveat}", ""]
    out += ["Heads: " + "; ".join(f"h{k} = {n}" for k, n in enumerate(names, start=1)), ""]
    ks = range(1, len(per_head) + 1)
    for c, first in enumerate(per_head[0]):
        out.append(f"## Condition: {first.condition}")
        out.append("")
        thr = ", ".join(f"h{k} " + ("none" if t[c].threshold is None else f"{t[c].threshold:.6g}")
                        for k, t in zip(ks, per_head, strict=True))
        fails = ", ".join(f"h{k} {len(t[c].failed)}" for k, t in zip(ks, per_head, strict=True))
        out.append(f"Thresholds: {thr}; files failed: {fails}.")
        out.append("")
        out += [f"**h{k}: {t[c].warning()}**" for k, t in zip(ks, per_head, strict=True) if t[c].warning()]
        out += [""] if any(t[c].warning() for t in per_head) else []
        cols = [f"{m} h{k}" for m in ("AP", "AUC", "Acc") for k in ks] + ["Decided", "Decided Acc", "Flipped"]
        out.append("| generator | real | fake | " + " | ".join(cols) + " |")
        out.append("|---|---:|---:|" + "---:|" * len(cols))
        rows = [{r.generator: r for r in t[c].rows} | {"\0mean": t[c].mean()} for t in per_head]
        for gen in [*(r.generator for r in first.rows), "\0mean"]:
            mine = [h.get(gen) for h in rows]
            ref = mine[0]
            if ref is None:
                continue
            name = "**mean**" if gen == "\0mean" else gen.replace("|", "\\|")
            cells = [_pct(getattr(r, m) if r else None) for m in ("ap", "auc", "acc") for r in mine]
            cells += [_pct(getattr(ref, m)) for m in ("coverage", "decided_acc", "flip_rate")]
            out.append(f"| {name} | {ref.n_real} | {ref.n_fake} | " + " | ".join(cells) + " |")
        out.append("")
        out.append("AP, AUC and Acc in %, per head (h1 = the first --weights); counts are head 1's. "
                   + VERDICT_NOTE)
        out.append("")
    return "\n".join(out)


def to_csv_heads(per_head: Sequence[Sequence[Table]], names: Sequence[str]) -> str:
    """``to_csv`` of every head, with a ``head`` column (its model id) first."""
    parts = []
    for k, (name, tables) in enumerate(zip(names, per_head, strict=True)):
        lines = to_csv(tables).splitlines()
        if k == 0:
            parts.append("head," + lines[0])
        parts += [f"{name}," + line for line in lines[1:]]
    return "\n".join(parts) + "\n"


def to_csv(tables: Sequence[Table]) -> str:
    buf = io.StringIO()
    fields = ["condition", "threshold", *Row.__dataclass_fields__, "trained_on"]
    w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    w.writeheader()
    for t in tables:
        for r in [*t.rows, t.mean()]:
            w.writerow({"condition": t.condition, "threshold": t.threshold, **asdict(r),
                        "trained_on": t.trained_on})
    return buf.getvalue()


def to_json(per_head: Sequence[Sequence[Table]], names: Sequence[str]) -> str:
    """Every head's tables as JSON (``-o TABLE.json``): per head and condition, each generator's
    row and the mean row, verdict figures included."""
    out = [{"head": name, "condition": t.condition, "threshold": t.threshold, "failed": len(t.failed),
            "trained_on": t.trained_on, "rows": [asdict(r) for r in t.rows], "mean": asdict(t.mean())}
           for name, tables in zip(names, per_head, strict=True) for t in tables]
    return json.dumps(out, indent=2)


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_")[:80] or "generator"


def write_plots(tables: Sequence[Table], evalset: EvalSet, folder: str | Path, random_init: bool = False
                ) -> list[Path]:
    """Per condition: one score histogram per generator and one ROC figure (with the caveat of a
    random-init backbone, as the tables carry it)."""
    note = CAVEAT if random_init else None
    folder = Path(folder)
    written = []
    groups = evalset.groups()
    for t in tables:
        curves = []
        for gen, reals, fakes in groups:
            neg = np.array([t.scores[p] for p in reals if p in t.scores])
            pos = np.array([t.scores[p] for p in fakes if p in t.scores])
            if len(neg) == 0 or len(pos) == 0:
                continue
            path = folder / f"hist_{_slug(t.condition)}_{_slug(gen)}.png"
            plots.histogram(path, [("real", neg), (gen, pos)], t.threshold, f"{gen} ({t.condition})",
                            note=note)
            written.append(path)
            curves.append((gen, neg, pos))
        path = folder / f"roc_{_slug(t.condition)}.png"
        plots.roc(path, curves, f"ROC per generator ({t.condition})", note=note)
        written.append(path)
    return written


def write_all_plots(per_head: Sequence[Sequence[Table]], evalset: EvalSet, folder: Path,
                    random_init: bool = False) -> list[Path]:
    """Every head's plots (one head: in ``folder``; several: ``folder/head1/``...)."""
    written: list[Path] = []
    for k, tables in enumerate(per_head, start=1):
        written += write_plots(tables, evalset, folder if len(per_head) == 1 else folder / f"head{k}",
                               random_init)
    return written


CAVEAT = "random-init backbone: these numbers say nothing about detection quality"


def texts(per_head: Sequence[Sequence[Table]], names: Sequence[str], evalset: EvalSet,
          random_init: bool) -> tuple[str, str]:
    """The tables as Markdown (what ``aiiscan evaluate`` prints) and as CSV; one head gets the
    paper's layout, several heads side by side."""
    caveat = CAVEAT if random_init else None
    where = f"{evalset.root} ({evalset.layout})"
    if len(per_head) == 1:
        return (to_markdown(per_head[0], f"aiiscan evaluate: {names[0]} on {where}", caveat),
                to_csv(per_head[0]))
    return (to_markdown_heads(per_head, names, f"aiiscan evaluate: {len(per_head)} heads on {where}", caveat),
            to_csv_heads(per_head, names))
