"""Text from files (names, error reasons, metadata) made safe for where it goes.

A file name or a metadata field is attacker-chosen: ``ESC[2J`` clears the screen, an OSC
sequence sets the window title or writes to the clipboard, a bidi override makes ``gpj.exe``
read as ``exe.jpg``, a lone surrogate cannot be written as UTF-8 at all. One escaping scheme
serves both destinations: ``clean_text`` for every string a file puts into a report row (tab and
line breaks kept), ``for_terminal`` for everything the CLI prints.
"""

from __future__ import annotations

import re
import sys
import unicodedata
from functools import cache

# C0 controls, DEL, C1 controls (a lone 0x9b is a CSI on some terminals), the bidi embeddings,
# overrides, isolates and marks, line/paragraph separators, and lone surrogates (undecodable
# bytes of a name under surrogateescape, which also could not be encoded for printing).
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069"
                     "\ud800-\udfff]")
_UNSAFE_KEEP_NEWLINES = re.compile(_UNSAFE.pattern.replace("\x00-\x1f", "\x00-\x09\x0b-\x1f"))
# In report rows, tab and line breaks are data (a prompt's lines); the rest as for a terminal.
_UNSAFE_IN_ROWS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e"
                             "\u2066-\u2069\ud800-\udfff]")


def _visible(match: re.Match) -> str:
    o = ord(match.group())
    return f"\\x{o:02x}" if o < 0x100 else f"\\u{o:04x}" if o < 0x10000 else f"\\U{o:08x}"


def _escape(match: re.Match) -> str:
    o = ord(match.group())
    if 0xDC80 <= o <= 0xDCFF:  # surrogateescape's stand-in for the undecodable byte o - 0xDC00
        return f"\\x{o - 0xDC00:02x}"
    return _visible(match)


def clean_text(text: str) -> str:
    """A file-derived string made safe for every report format: each unsafe character becomes a
    visible escape (``\\x00``, ``\\u202e``, ``\\ud800``), the rest is kept as is."""
    return _UNSAFE_IN_ROWS.sub(_visible, text)


def for_terminal(text: str, keep_newlines: bool = False) -> str:
    """``text`` with every control, bidi and unencodable character shown as a visible escape
    (``\\x1b``, ``\\u202e``); ``keep_newlines`` leaves line breaks of multi-line messages."""
    return (_UNSAFE_KEEP_NEWLINES if keep_newlines else _UNSAFE).sub(_escape, text)


def display_path(path: str) -> str:
    """A path as the report's ``path`` column holds it: valid UTF-8 and one string per name.

    An undecodable byte (surrogateescape's stand-in) is shown as ``\\xNN`` and a literal
    backslash as ``\\\\``, so ``a_<0xff>.jpg`` and a file literally named ``a_\\xff.jpg`` never
    share a string; ``path_from_display`` undoes it.
    """
    return path.replace("\\", "\\\\").encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


_DISPLAY_ESCAPE = re.compile(r"\\(\\|x[0-9a-f]{2})")


def _undo(m: re.Match) -> str:
    if m.group(1) == "\\":
        return "\\"
    byte = int(m.group(1)[1:], 16)
    return chr(byte) if byte < 0x80 else chr(0xDC00 + byte)  # ASCII: an escaped separator (``\x3a``)


def path_from_display(shown: str) -> str:
    """The file-system name (str, surrogateescape) behind a report ``path``. ``\\xNN`` below
    0x80 is an ASCII character escaped to keep a path unambiguous (a store key's ``::`` is shown
    as ``\\x3a\\x3a``): ``display_path`` never shows a decodable byte that way."""
    return _DISPLAY_ESCAPE.sub(_undo, shown)


# On a page every invisible character is suspect: besides what a terminal must not get, any other
# format character (zero-width spaces and joiners, the BOM, tag characters, interlinear
# annotations), line and paragraph separators, and the noncharacters.
_PAGE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


@cache
def _page_unsafe() -> re.Pattern:
    """Every code point ``for_page`` escapes, as one character class (built once, on first use,
    from this Python's Unicode database)."""
    ranges, start = [], None
    for o in range(sys.maxunicode + 2):
        bad = o <= sys.maxunicode and (unicodedata.category(chr(o)) in _PAGE_CATEGORIES
                                       or (o & 0xFFFE) == 0xFFFE or 0xFDD0 <= o <= 0xFDEF)
        if bad and start is None:
            start = o
        elif not bad and start is not None:
            ranges.append(f"\\U{start:08x}-\\U{o - 1:08x}")
            start = None
    return re.compile("[" + "".join(ranges) + "]")


def for_page(text: str) -> str:
    """``text`` for an HTML page: as ``for_terminal`` shows it (controls, bidi, lone surrogates
    as visible escapes; line breaks too, so that a name's newline is seen, not rendered as a
    space), and every other format character, separator and noncharacter escaped as well. The
    result is valid UTF-8 and reads the same in a browser as the characters say."""
    return _page_unsafe().sub(_escape, for_terminal(text))
