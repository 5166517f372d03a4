"""Where heads live: a name or path prefix resolved to its files, the default head, installing one.

The installed default is a pointer (``default.link`` in the per-user weights folder) to a head
that keeps its own name and its one card: calibrating ``default`` or the head's name writes the
same card, and reports name the head (``mine@...``), never ``default``. A ``default`` installed as
a copy by an earlier version (``default.safetensors`` + ``default.json``) is still read.

No torch: listing and resolving heads (``aiiscan heads``, the Ray driver) reads cards only.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from ..card import ModelCard, head_files, read_card
from ..errors import WeightsError
from ..files import atomic_write_bytes, open_regular, read_user_file

WEIGHTS_DIR_ENV = "AIISCAN_WEIGHTS_DIR"
DEFAULT_HEAD_ENV = "AIISCAN_WEIGHTS"
DEFAULT_NAME = "default"
POINTER_SUFFIX = ".link"  # default.link: which head is the default
POINTER_FORMAT = "aiiscan-default/1"
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


def default_pointer() -> Path:
    """The file that names the installed default head."""
    return user_weights_dir() / (DEFAULT_NAME + POINTER_SUFFIX)


def _pointed() -> Path | None:
    """The head prefix ``default.link`` names (None: no pointer). A pointer that cannot be read,
    or names a head that is gone, is an error that says so: never a silent fallback to another
    head."""
    link = default_pointer()
    if not link.is_file():
        return None
    try:
        raw = json.loads(read_user_file(link, 64 * 1024, f"default head pointer {link}"))
    except ValueError:
        raw = None
    target = raw.get("head") if isinstance(raw, dict) and raw.get("format") == POINTER_FORMAT else None
    if not isinstance(target, str) or not os.path.isabs(target):
        raise WeightsError(f"the default head pointer {link} is not one aiiscan wrote: install a default "
                           "again with `aiiscan heads default W`")
    st, card = head_files(target)
    if not (st.is_file() and card.is_file()):
        raise WeightsError(f"the default head is {target}, whose files are gone ({st.name} and {card.name} "
                           "moved or deleted): install a default again with `aiiscan heads default W`")
    return Path(target)


def _default_places() -> list[Path]:
    """Where an installed default head may be, in order (the pointer comes before these)."""
    return [user_weights_dir() / DEFAULT_NAME, Path.cwd() / "weights" / DEFAULT_NAME]


def has_default_head() -> bool:
    """Whether a command given no ``--weights`` has a head to score with (``$AIISCAN_WEIGHTS``
    set, or an installed default): a scan without one collects evidence only."""
    return bool(os.environ.get(DEFAULT_HEAD_ENV)) or default_pointer().is_file() or any(
        all(f.is_file() for f in head_files(prefix)) for prefix in _default_places())


def default_head() -> Path:
    """The head used when no ``--weights`` is given: ``$AIISCAN_WEIGHTS``, then the head that
    ``default.link`` names, then a ``default`` copy in the per-user weights folder (installed by
    an earlier version), then ``./weights/default``."""
    if os.environ.get(DEFAULT_HEAD_ENV):
        return resolve(os.environ[DEFAULT_HEAD_ENV])
    pointed = _pointed()
    if pointed is not None:
        return pointed
    places = _default_places()
    for prefix in places:
        st, card = head_files(prefix)
        if st.is_file() and card.is_file():
            return prefix
    raise WeightsError(NO_HEAD.format(looked=", ".join(str(p) for p in [default_pointer(), *places])))


def resolve_head(weights: str | Path | None) -> Path:
    """``--weights`` if given, else the default head."""
    return default_head() if weights is None else resolve(weights)


def installed_default() -> list[Path]:
    """The files an installed default occupies today (the pointer, or an earlier version's copy):
    installing another needs ``--overwrite``."""
    return [p for p in (default_pointer(), *head_files(user_weights_dir() / DEFAULT_NAME)) if p.exists()]


def install_default(prefix: str | Path) -> Path:
    """Make the head at ``prefix`` the default: ``default.link`` names its absolute prefix, so
    the head keeps its name and its one card. An earlier version's ``default`` copy is removed
    (it would otherwise be a second, silently diverging card). Returns the head's prefix."""
    st, card = head_files(prefix)
    if not (st.is_file() and card.is_file()):
        raise WeightsError(f"no head at {st.with_suffix('')}: expected {st.name} and {card.name}")
    target = Path(os.path.abspath(st.with_suffix("")))
    if target.name == DEFAULT_NAME and target.parent == Path(os.path.abspath(user_weights_dir())):
        return target  # an earlier version's copy, already the default
    body = json.dumps({"format": POINTER_FORMAT, "head": str(target)}, indent=2) + "\n"
    link = default_pointer()
    try:
        atomic_write_bytes(link, body.encode())
        for old in head_files(user_weights_dir() / DEFAULT_NAME):
            old.unlink(missing_ok=True)
    except OSError as exc:
        raise WeightsError(f"cannot install the default head in {link.parent}: "
                           f"{exc.strerror or exc}") from None
    return target


def resolve(weights: str | Path) -> Path:
    """A head prefix from a path prefix or a name found in the weights directories."""
    st, card = head_files(weights)
    if st.is_file() and card.is_file():
        return st.with_suffix("")
    if str(weights) == DEFAULT_NAME and default_pointer().is_file():
        return _pointed()  # a pointer is always a head (or an error that says why not)
    candidates = _search_dirs()
    for folder in candidates:
        st2, card2 = head_files(folder / str(weights))
        if st2.is_file() and card2.is_file():
            return st2.with_suffix("")
    if os.sep not in str(weights) and default_pointer().is_file():
        try:
            target: Path | None = _pointed()
        except WeightsError:
            target = None
        if target is not None and target.name == str(weights):
            return target  # the default head by its own name, as `aiiscan heads` lists it
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
        with open_regular(st_path) as f:
            digest = hashlib.file_digest(f, "sha256").hexdigest()
    except OSError as exc:
        raise WeightsError(f"cannot read {st_path}: {exc.strerror or exc}") from None
    if digest != card.tensors_sha256:
        raise WeightsError(f"{st_path} does not match the digest in its model card (modified or truncated)")


@dataclass(frozen=True)
class Installed:
    """A head found in a weights folder or named by the default pointer: its name, files, and
    card (or why it cannot be read), and whether commands use it without ``--weights``."""

    name: str
    prefix: Path
    card: ModelCard | None
    problem: str | None = None
    default: bool = False


def _same(a: Path, b: Path) -> bool:
    return os.path.realpath(a) == os.path.realpath(b)


def _entry(prefix: Path, default: Path | None) -> Installed:
    is_default = default is not None and _same(prefix, default)
    try:
        return Installed(prefix.name, prefix, read_card(prefix), default=is_default)
    except WeightsError as exc:
        return Installed(prefix.name, prefix, None, str(exc), default=is_default)


def installed_heads() -> list[Installed]:
    """Every head in the weights folders (``$AIISCAN_WEIGHTS_DIR`` or the per-user folder,
    ``./weights``, the repository's), by folder then name, and the default head wherever it lives;
    a card that cannot be read, or a default pointer that names no head, is listed with its
    reason, never skipped in silence."""
    found: list[Installed] = []
    try:
        default: Path | None = default_head()
    except WeightsError as exc:
        default = None
        if default_pointer().is_file():  # a pointer to nothing: said, not hidden
            found.append(Installed(DEFAULT_NAME, default_pointer(), None, str(exc), default=True))
    for folder in _search_dirs():
        for card_path in sorted(folder.glob("*.json")) if folder.is_dir() else ():
            prefix = card_path.with_suffix("")
            if head_files(prefix)[0].is_file():
                found.append(_entry(prefix, default))
    if default is not None and not any(_same(h.prefix, default) for h in found):
        found.insert(0, _entry(default, default))
    return found
