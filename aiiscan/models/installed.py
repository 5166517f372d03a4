"""Where heads live: a name or path prefix resolved to its files, the default head, installing one.

No torch: listing and resolving heads (``aiiscan heads``, the Ray driver) reads cards only.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from ..card import ModelCard, head_files, read_card
from ..errors import WeightsError
from ..files import atomic_write_bytes

WEIGHTS_DIR_ENV = "AIISCAN_WEIGHTS_DIR"
DEFAULT_HEAD_ENV = "AIISCAN_WEIGHTS"
DEFAULT_NAME = "default"
REPO_WEIGHTS_DIR = Path(__file__).resolve().parents[2] / "weights"


def user_weights_dir() -> Path:
    """Where installed heads live: ``$AIISCAN_WEIGHTS_DIR``, else the per-user data folder
    (``$XDG_DATA_HOME/aiiscan/weights``, by default ``~/.local/share/aiiscan/weights``)."""
    if os.environ.get(WEIGHTS_DIR_ENV):
        return Path(os.environ[WEIGHTS_DIR_ENV])
    data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data) / "aiiscan" / "weights"


def _search_dirs() -> list[Path]:
    """Each folder once (run from the repository, ./weights is the repository's)."""
    found: list[Path] = []
    for d in (user_weights_dir(), Path.cwd() / "weights", REPO_WEIGHTS_DIR):
        if all(os.path.realpath(d) != os.path.realpath(f) for f in found):
            found.append(d)
    return found


NO_HEAD = """no head to score with, and none is installed.
aiiscan ships no trained head: a CLIP-Flow head is learned from the CLIP features of authentic
photos, and a useful one needs the real CLIP weights (ViT-L-14/openai, ~1.7 GB, downloaded once
by `aiiscan train`), which cannot be bundled. Make one from photos you trust:

    aiiscan train --natural ~/photos/authentic -o mine --install-default
    aiiscan calibrate --natural ~/photos/calibration
    aiiscan scan ./photos -o report.parquet

or name a head with --weights W or $AIISCAN_WEIGHTS=W. Looked for a default head in: {looked}"""


def _default_places() -> list[Path]:
    return [user_weights_dir() / DEFAULT_NAME, Path.cwd() / "weights" / DEFAULT_NAME]


def has_default_head() -> bool:
    """Whether a command given no ``--weights`` has a head to score with (``$AIISCAN_WEIGHTS``
    set, or an installed default): a scan without one collects evidence only."""
    return bool(os.environ.get(DEFAULT_HEAD_ENV)) or any(
        all(f.is_file() for f in head_files(prefix)) for prefix in _default_places())


def default_head() -> Path:
    """The head used when no ``--weights`` is given: ``$AIISCAN_WEIGHTS``, then ``default`` in
    the per-user weights folder, then ``./weights/default``."""
    if os.environ.get(DEFAULT_HEAD_ENV):
        return resolve(os.environ[DEFAULT_HEAD_ENV])
    places = _default_places()
    for prefix in places:
        st, card = head_files(prefix)
        if st.is_file() and card.is_file():
            return prefix
    raise WeightsError(NO_HEAD.format(looked=", ".join(str(p) for p in places)))


def resolve_head(weights: str | Path | None) -> Path:
    """``--weights`` if given, else the default head."""
    return default_head() if weights is None else resolve(weights)


def install_default(prefix: str | Path) -> Path:
    """Copy a head to ``default`` in the per-user weights folder (tensors first, then the card,
    each atomically), so that commands find it without ``--weights``."""
    src_st, src_card = head_files(prefix)
    dest = user_weights_dir() / DEFAULT_NAME
    dst_st, dst_card = head_files(dest)
    try:
        atomic_write_bytes(dst_st, src_st.read_bytes())
        atomic_write_bytes(dst_card, src_card.read_bytes())
    except OSError as exc:
        raise WeightsError(f"cannot install the head as {dest}: {exc.strerror or exc}") from None
    return dest


def resolve(weights: str | Path) -> Path:
    """A head prefix from a path prefix or a name found in the weights directories."""
    st, card = head_files(weights)
    if st.is_file() and card.is_file():
        return st.with_suffix("")
    candidates = _search_dirs()
    for folder in candidates:
        st2, card2 = head_files(folder / str(weights))
        if st2.is_file() and card2.is_file():
            return st2.with_suffix("")
    looked = ", ".join(str(c) for c in candidates)
    raise WeightsError(
        f"no head named {weights!r}: expected {st.name} and {card.name} next to each other "
        f"(also looked in {looked}). Train one with `aiiscan train --natural DIR -o {weights}`."
    )


def read_head_card(weights: str | Path | None) -> tuple[ModelCard, Path]:
    """The card of a head (``None``: the default head) and its resolved prefix, without loading
    its tensors: what a driver that only plans (the Ray engine's, ``aiiscan heads``) needs."""
    prefix = resolve_head(weights)
    return read_card(prefix), prefix


def verify_digest(card: ModelCard, prefix: Path) -> None:
    """Refuse a tensors file that is not the one the card describes (modified or truncated)."""
    if not card.tensors_sha256:
        return
    st_path, _ = head_files(prefix)
    try:
        with open(st_path, "rb") as f:
            digest = hashlib.file_digest(f, "sha256").hexdigest()
    except OSError as exc:
        raise WeightsError(f"cannot read {st_path}: {exc.strerror or exc}") from None
    if digest != card.tensors_sha256:
        raise WeightsError(f"{st_path} does not match the digest in its model card (modified or truncated)")


@dataclass(frozen=True)
class Installed:
    """A head found in a weights folder: its name, files, and card (or why it cannot be read)."""

    name: str
    prefix: Path
    card: ModelCard | None
    problem: str | None = None


def installed_heads() -> list[Installed]:
    """Every head in the weights folders (``$AIISCAN_WEIGHTS_DIR`` or the per-user folder,
    ``./weights``, the repository's), by folder then name; a card that cannot be read is listed
    with its reason, never skipped in silence."""
    found = []
    for folder in _search_dirs():
        for card_path in sorted(folder.glob("*.json")) if folder.is_dir() else ():
            prefix = card_path.with_suffix("")
            if not head_files(prefix)[0].is_file():
                continue
            try:
                found.append(Installed(prefix.name, prefix, read_card(prefix)))
            except WeightsError as exc:
                found.append(Installed(prefix.name, prefix, None, str(exc)))
    return found
