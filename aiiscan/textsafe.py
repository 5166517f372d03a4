"""Text from files (names, error reasons, metadata) made safe to print on an analyst's terminal.

A file name is attacker-chosen: ``ESC[2J`` clears the screen, an OSC sequence sets the window
title or writes to the clipboard, a bidi override makes ``gpj.exe`` read as ``exe.jpg``.
Every path or file-derived string the CLI prints goes through ``for_terminal``.
"""

from __future__ import annotations

import re

# C0 controls, DEL, C1 controls (a lone 0x9b is a CSI on some terminals), the bidi embeddings,
# overrides, isolates and marks, line/paragraph separators, and lone surrogates (undecodable
# bytes of a name under surrogateescape, which also could not be encoded for printing).
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069"
                     "\ud800-\udfff]")
_UNSAFE_KEEP_NEWLINES = re.compile(_UNSAFE.pattern.replace("\x00-\x1f", "\x00-\x09\x0b-\x1f"))


def _escape(match: re.Match) -> str:
    o = ord(match.group())
    if 0xDC80 <= o <= 0xDCFF:  # surrogateescape's stand-in for the undecodable byte o - 0xDC00
        return f"\\x{o - 0xDC00:02x}"
    return f"\\x{o:02x}" if o < 0x100 else f"\\u{o:04x}"


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


def path_from_display(shown: str) -> str:
    """The file-system name (str, surrogateescape) behind a report ``path``."""
    return _DISPLAY_ESCAPE.sub(
        lambda m: "\\" if m.group(1) == "\\" else chr(0xDC00 + int(m.group(1)[1:], 16)), shown)
