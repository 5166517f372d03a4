"""Generator attribution from metadata, by rules kept as data (``rules/generators.json``).

A rule reads one metadata field (a PNG text chunk, an EXIF or XMP tag, a C2PA fact), tests it
(``equals``, ``prefix``, ``contains``, ``regex`` or ``present``) and names the generator and
whether the file was ``generated`` or ``edited`` with it. The first rule that matches decides;
rules from a user's file come before the built-in ones, and a user rule with a built-in's id
replaces it. A rules file is untrusted input: its size, its schema and every pattern are
checked before a scan starts, and a pattern must be one the regex engine runs in linear time
(no repeated groups, no backreferences or lookarounds, at most one variable-length repeat, a
bounded number of ways to match at one position), on at most ``MAX_INPUT`` characters.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path

from ..errors import UsageError
from ..files import read_user_file

try:  # the stdlib's own regex parser: a pattern's structure is checked, not guessed from its text
    from re import _parser as _sre  # Python 3.11+
except ImportError:  # pragma: no cover - Python 3.10
    import sre_parse as _sre  # type: ignore[no-redef]

RULES_VERSION = 1
MAX_FILE = 256 * 1024  # bytes of a rules file
MAX_RULES = 500
MAX_PATTERN = 128  # characters of a regex
MAX_VALUE = 200  # characters of an equals/prefix/contains value
MAX_WAYS = 64  # ways a regex may match at one position (alternatives times repeat counts)
MAX_INPUT = 64 * 1024  # characters of a field value a rule reads
MATCHES = ("equals", "prefix", "contains", "regex", "present")
KINDS = ("generated", "edited")
FIELDS = (
    "exif:Make", "exif:Model", "exif:Software", "exif:UserComment",
    "xmp:CreatorTool", "xmp:Credit", "xmp:DigitalSourceType",
    "c2pa:claim_generator", "c2pa:generated_by", "c2pa:edited_by", "c2pa:ai",
)  # and png:<keyword>, any PNG text chunk
KEYS = {"id", "field", "match", "value", "ignore_case", "generator", "kind", "note"}
_ID = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_PNG_FIELD = re.compile(r"png:[\x20-\x7e]{1,79}")
_SINGLE = {"LITERAL", "NOT_LITERAL", "ANY", "IN"}  # what a repeat may apply to
_REPEATS = {"MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"}


@dataclass(frozen=True)
class Rule:
    id: str
    field: str
    match: str
    value: str | None
    generator: str | None
    kind: str
    ignore_case: bool = False
    pattern: re.Pattern | None = field(default=None, compare=False, repr=False)  # a regex rule's, compiled

    def test(self, text: str) -> bool:
        """Whether this rule matches the field's value (cut to ``MAX_INPUT`` characters)."""
        text = text[:MAX_INPUT]
        if self.match == "present":
            return True
        if self.pattern is not None:
            return self.pattern.search(text) is not None
        value = self.value or ""
        if self.ignore_case:
            text, value = text.casefold(), value.casefold()
        if self.match == "equals":
            return text.strip() == value
        if self.match == "prefix":
            return text.lstrip().startswith(value)
        return value in text


@dataclass(frozen=True)
class Attribution:
    generator: str | None
    kind: str
    rule: str


class _Refused(ValueError):
    """A pattern outside the linear-time subset; the message says which construct."""


def _ways(items, found: list[int]) -> int:
    """Upper bound of the ways ``items`` can match at one position; ``found`` collects the
    variable-length repeats (1 for a bounded one, 2 for an unbounded one)."""
    ways = 1
    for op, av in items:
        name = op.name
        if name in _REPEATS:
            low, high, item = av
            if len(item) != 1 or item[0][0].name not in _SINGLE:
                raise _Refused("a quantifier applies to a group; quantifiers may only repeat one "
                               "character or class")
            if high != low:
                found.append(2 if high == _sre.MAXREPEAT else 1)
                ways *= 1 if high == _sre.MAXREPEAT else high - low + 1
        elif name == "SUBPATTERN":
            ways *= _ways(av[-1], found)
        elif name == "BRANCH":
            ways *= sum(_ways(alt, found) for alt in av[1])
        elif name not in _SINGLE and name != "AT":
            raise _Refused(f"{name.lower().replace('_', ' ')} is not allowed (no backreferences, "
                           "lookarounds or conditionals)")
    return ways


def check_pattern(pattern: str) -> None:
    """Raises ``ValueError`` unless ``pattern`` runs in linear time: length cap, no repeated
    groups, at most one variable-length repeat (an unbounded one only after a leading ``^``),
    at most ``MAX_WAYS`` ways to match at one position."""
    if not 0 < len(pattern) <= MAX_PATTERN:
        raise ValueError(f"a pattern has 1 to {MAX_PATTERN} characters")
    try:
        re.compile(pattern)
        parsed = _sre.parse(pattern)
    except (re.error, RecursionError, OverflowError) as exc:
        raise ValueError(f"not a regular expression: {exc}") from None
    if parsed.state.flags & re.MULTILINE:
        raise ValueError("(?m) is not allowed: ^ must anchor the start of the value")
    found: list[int] = []
    ways = _ways(list(parsed), found)
    if len(found) > 1:
        raise ValueError("more than one variable-length repeat; use a fixed count or split the rule")
    items = list(parsed)
    anchored = bool(items) and items[0][0].name == "AT" and items[0][1].name in ("AT_BEGINNING",
                                                                                  "AT_BEGINNING_STRING")
    if found == [2] and not anchored:
        raise ValueError("an unbounded repeat (*, +, {n,}) needs the pattern to start with ^")
    if ways > MAX_WAYS:
        raise ValueError(f"{ways} ways to match at one position (at most {MAX_WAYS}): narrow the "
                         "repeat counts or alternatives")


def _rule(raw: object, index: int, where: str) -> Rule:
    name = raw.get("id") if isinstance(raw, dict) and isinstance(raw.get("id"), str) else None
    label = f"rule {name!r}" if name else f"rule #{index + 1}"

    def bad(key: str, why: str) -> UsageError:
        return UsageError(f"{where}: {label}, {key!r}: {why}")

    if not isinstance(raw, dict):
        raise UsageError(f"{where}: {label}: a rule is a JSON object")
    for key in raw:
        if key not in KEYS:
            raise bad(key, f"unknown key (known: {', '.join(sorted(KEYS))})")
    for key in ("id", "field", "match", "kind"):
        if not isinstance(raw.get(key), str):
            raise bad(key, "required, a string")
    if not _ID.fullmatch(raw["id"]):
        raise bad("id", "1 to 64 characters of a-z, 0-9, '.', '_', '-', starting with a letter or digit")
    source = raw["field"]
    if source not in FIELDS and not _PNG_FIELD.fullmatch(source):
        raise bad("field", f"unknown field {source!r} (known: {', '.join(FIELDS)}, png:<keyword>)")
    match = raw["match"]
    if match not in MATCHES:
        raise bad("match", f"{match!r} is not one of {', '.join(MATCHES)}")
    value = raw.get("value")
    if match == "present":
        if value is not None:
            raise bad("value", "a 'present' rule has no value")
    elif not isinstance(value, str) or not 0 < len(value) <= (MAX_PATTERN if match == "regex" else MAX_VALUE):
        raise bad("value", f"required for {match!r}: a non-empty string of at most "
                           f"{MAX_PATTERN if match == 'regex' else MAX_VALUE} characters")
    if match == "regex":
        try:
            check_pattern(value)
        except ValueError as exc:
            raise bad("value", str(exc)) from None
    generator = raw.get("generator")
    if generator is not None and (not isinstance(generator, str) or not 0 < len(generator) <= 100):
        raise bad("generator", "null or a string of 1 to 100 characters")
    if raw["kind"] not in KINDS:
        raise bad("kind", f"{raw['kind']!r} is not one of {', '.join(KINDS)}")
    ignore_case = raw.get("ignore_case", False)
    if not isinstance(ignore_case, bool):
        raise bad("ignore_case", "true or false")
    note = raw.get("note")
    if note is not None and (not isinstance(note, str) or len(note) > 1000):
        raise bad("note", "a string of at most 1000 characters")
    pattern = re.compile(value, re.IGNORECASE if ignore_case else 0) if match == "regex" else None
    return Rule(raw["id"], source, match, value, generator, raw["kind"], ignore_case, pattern)


def parse_rules(text: str, where: str) -> tuple[Rule, ...]:
    """The rules of a rules file's text; ``UsageError`` (one line naming the rule and the key)
    for anything outside the schema."""
    if len(text) > MAX_FILE:
        raise UsageError(f"{where}: over {MAX_FILE} bytes")
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise UsageError(f"{where}: not JSON: {exc}") from None
    if not isinstance(doc, dict) or set(doc) - {"version", "rules"} or not isinstance(doc.get("rules"), list):
        raise UsageError(f'{where}: expected {{"version": {RULES_VERSION}, "rules": [...]}}')
    if doc.get("version") != RULES_VERSION:
        raise UsageError(f"{where}: 'version' must be {RULES_VERSION}")
    if len(doc["rules"]) > MAX_RULES:
        raise UsageError(f"{where}: {len(doc['rules'])} rules, at most {MAX_RULES}")
    rules = tuple(_rule(raw, i, where) for i, raw in enumerate(doc["rules"]))
    seen: set[str] = set()
    for rule in rules:
        if rule.id in seen:
            raise UsageError(f"{where}: rule {rule.id!r}, 'id': used twice")
        seen.add(rule.id)
    return rules


def read_rules_file(path: str | Path) -> str:
    """A user's rules file, checked: its text, for ``RuleSet.of`` in the workers."""
    where = f"rules file {str(path)!r}"
    data = read_user_file(path, MAX_FILE, where)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"{where}: not UTF-8") from None
    parse_rules(text, where)
    return text


@lru_cache(maxsize=1)
def builtin_rules() -> tuple[Rule, ...]:
    text = resources.files("aiiscan").joinpath("rules/generators.json").read_text("utf-8")
    return parse_rules(text, "built-in rules")


@dataclass(frozen=True)
class RuleSet:
    rules: tuple[Rule, ...]

    @staticmethod
    @lru_cache(maxsize=8)
    def of(user_text: str | None = None) -> RuleSet:
        """The user's rules (a checked file's text) first, then the built-in ones that no user
        rule replaces by id. Cached: a worker parses a rules file once."""
        user = parse_rules(user_text, "rules file") if user_text else ()
        ids = {r.id for r in user}
        return RuleSet(user + tuple(r for r in builtin_rules() if r.id not in ids))

    def attribute(self, fields: dict[str, str]) -> Attribution | None:
        """The first rule whose field is there and matches."""
        for rule in self.rules:
            value = fields.get(rule.field)
            if value is not None and rule.test(value):
                return Attribution(rule.generator, rule.kind, rule.id)
        return None

    def digest(self) -> str:
        """sha256 of the rules in effect, in order: recorded with a report, so that rows whose
        evidence came from other rules can be told apart."""
        canon = json.dumps([[r.id, r.field, r.match, r.value, r.ignore_case, r.generator, r.kind]
                            for r in self.rules], ensure_ascii=False, separators=(",", ":"))
        return "sha256:" + hashlib.sha256(canon.encode("utf-8")).hexdigest()


def rules_digest(user_text: str | None = None) -> str:
    """The digest of the rules a scan with this user rules text (or none) applies."""
    return RuleSet.of(user_text).digest()
