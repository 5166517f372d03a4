"""What the user adds to the metadata evidence: C2PA trust anchors and generator rules.

``options.EvidenceOptions`` names the files (``--c2pa-trust`` or ``$AIISCAN_C2PA_TRUST``,
``--rules``); ``load_evidence`` reads and checks them once, before the scan starts, so that a bad
file is a usage error with one line and never a surprise in the workers. The result, ``Evidence``, holds the
checked contents (the anchors re-encoded as bare PEM, the rules' text): it travels inside each
decode job, so that workers on any machine have it without opening a file, and each worker
parses it once (the c2pa Context and the compiled rules are cached by content).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from ..errors import UsageError
from ..files import read_user_file
from ..options import EvidenceOptions
from .generators import RuleSet, read_rules_file

MAX_TRUST_FILE = 1024 * 1024  # bytes of a PEM file of anchors
MAX_ANCHORS = 1000
# What the evidence code records, as a number: raised whenever a release changes how a column of
# evidence is made (a parser, the watermark detector, the C2PA check), so that `--incremental`
# makes the evidence of unchanged files again rather than carrying an older version's forward.
EVIDENCE_VERSION = 1


@dataclass(frozen=True)
class Evidence:
    """The checked contents the decode workers use (a few KB in each job)."""

    trust_pem: str | None = None  # CA certificates, PEM, comments dropped
    user_rules: str | None = None  # a checked rules file's text

    def rules(self) -> RuleSet:
        return RuleSet.of(self.user_rules)

    def metadata(self) -> dict:
        """For the report's metadata: which rules and anchors made the evidence columns."""
        anchors = None
        if self.trust_pem:
            from cryptography import x509

            certs = x509.load_pem_x509_certificates(self.trust_pem.encode("ascii"))
            anchors = {"sha256": hashlib.sha256(self.trust_pem.encode("ascii")).hexdigest(),
                       "subjects": [c.subject.rfc4514_string() for c in certs]}
        return {"version": EVIDENCE_VERSION, "generator_rules_digest": self.rules().digest(),
                "user_rules": self.user_rules is not None, "c2pa_trust_anchors": anchors}

    def same_as(self, recorded: object) -> bool:
        """Whether a report's recorded evidence settings (its metadata's ``evidence``) are these:
        the same evidence code, rules and trust anchors. A report that recorded none (written
        before these columns existed) is not."""
        if not isinstance(recorded, dict):
            return False
        mine = self.metadata()
        keys = ("version", "generator_rules_digest")
        anchors = (recorded.get("c2pa_trust_anchors") or {}) if isinstance(recorded.get("c2pa_trust_anchors"),
                                                                             (dict, type(None))) else {}
        return (all(recorded.get(k) == mine[k] for k in keys)
                and anchors.get("sha256") == (mine["c2pa_trust_anchors"] or {}).get("sha256"))


def read_trust_anchors(path: str | Path) -> str:
    """The CA certificates of a PEM file, re-encoded as bare PEM; ``UsageError`` when the file
    is unreadable, too big, holds no certificate or names an end-entity certificate."""
    where = f"C2PA trust anchors {str(path)!r}"
    try:
        import c2pa  # noqa: F401  (anchors are of no use without the checker)
    except ImportError:
        raise UsageError(f"{where}: checking C2PA trust needs c2pa-python: pip install c2pa-python") from None
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    data = read_user_file(path, MAX_TRUST_FILE, where)
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise UsageError(f"{where}: not a PEM file of certificates ({exc})") from None
    if len(certs) > MAX_ANCHORS:
        raise UsageError(f"{where}: {len(certs)} certificates, at most {MAX_ANCHORS}")
    for n, cert in enumerate(certs, 1):
        try:
            ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        except x509.ExtensionNotFound:
            ca = True  # an old root without the extension: c2pa-python decides
        except ValueError as exc:
            raise UsageError(f"{where}: certificate {n}: unreadable extensions ({exc})") from None
        if not ca:
            raise UsageError(f"{where}: certificate {n} ({cert.subject.rfc4514_string()[:80]}) is not a CA "
                             "certificate: give the root (or intermediate) that issued the signers")
    return "".join(c.public_bytes(Encoding.PEM).decode("ascii") for c in certs)


def load_evidence(options: EvidenceOptions) -> Evidence:
    """Reads and checks the files ``options`` names, once, before a scan starts; ``UsageError``
    with one line for either."""
    return Evidence(read_trust_anchors(options.c2pa_trust) if options.c2pa_trust else None,
                    read_rules_file(options.rules) if options.rules else None)
