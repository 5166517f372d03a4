"""Where a scan's report goes: a local file, or an object in a store, assembled locally first.

Checked before the model loads: the format (from ``--format`` or the name), the output and every
file written beside it (``files.check_output``). A report bound for a store is assembled in a
local folder (its parts beside it, as for a local report) and uploaded whole at the end; the
local copies then go.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .. import inputs
from ..errors import ReportError
from ..files import OutputError, check_output
from ..inputs.store import StoreError, put_file
from ..reports.formats import format_for, module


@dataclass(frozen=True)
class Destination:
    """``output`` as given (a path or a URL), the local file the report is assembled in, its
    format, and whether it is uploaded at the end."""

    output: str | Path
    local: Path
    fmt: str
    remote: bool

    def publisher(self) -> Callable[[Path], None] | None:
        """What ``ReportWriter.finish`` calls once the local report is whole: the upload."""
        return _uploader(str(self.output), module(self.fmt).SIDECAR) if self.remote else None

    def done(self, report: Path) -> str | Path:
        """Where the report is now; a remote one leaves no empty staging folder behind."""
        if not self.remote:
            return report
        with contextlib.suppress(OSError):  # not empty (another scan's parts): it stays
            self.local.parent.rmdir()  # only the URL's own folder: the one above may be --parts-dir
        return self.output


def destination(output: str | Path, fmt: str | None, overwrite: bool, parts_dir: str | None) -> Destination:
    """Check where the report goes, before any work: a bad name costs seconds, not a scan."""
    remote = inputs.is_remote(str(output))
    try:
        fmt = format_for(output, fmt)
    except ReportError:
        if not remote and os.path.isdir(output):  # the real mistake, not the suffix
            raise OutputError(f"report {str(output)!r} is a folder: name a file in it, "
                              f"e.g. {output}/report.parquet") from None
        raise
    side = (".parts", ".meta.json") if module(fmt).SIDECAR else (".parts",)
    check_output(output, overwrite=overwrite, companions=side, what="report")
    local = staging_for(str(output), parts_dir) if remote else Path(output)
    if remote:
        check_output(local, overwrite=True, companions=side, what="report's local copy")
    return Destination(output, local, fmt, remote)


def staging_for(url: str, parts_dir: str | None = None) -> Path:
    """Where a report bound for an object store is assembled: ``PARTS_DIR/<sha of the URL>/NAME``
    (parts beside it, as for a local report). ``parts_dir``: ``--parts-dir``, else
    ``$AIISCAN_PARTS_DIR``, else ``$XDG_CACHE_HOME/aiiscan/parts`` (``~/.cache/aiiscan/parts``).
    The same URL always maps to the same folder, so ``--resume`` finds the parts."""
    base = parts_dir or os.environ.get("AIISCAN_PARTS_DIR")
    if not base:
        cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        base = os.path.join(cache, "aiiscan", "parts")
    digest = hashlib.sha256(url.encode("utf-8", "surrogateescape")).hexdigest()[:32]
    name = url.rstrip("/").rsplit("/", 1)[-1]
    return Path(base) / digest / name


def _uploader(url: str, sidecar: bool) -> Callable[[Path], None]:
    """Publish a finished local report to ``url`` (its sidecar metadata first), then drop the
    local copies. A failure leaves the parts for --resume."""
    def publish(local: Path) -> None:
        files = [(local, url)]
        if sidecar:
            files.insert(0, (local.with_name(local.name + ".meta.json"), url + ".meta.json"))
        try:
            for src, dst in files:
                put_file(src, dst)
        except StoreError as exc:
            raise ReportError(f"cannot upload the report to {url}: {exc}. Every row is kept in "
                              f"{local}.parts: rerun the same command with --resume") from None
        for src, _ in files:
            src.unlink(missing_ok=True)
    return publish
