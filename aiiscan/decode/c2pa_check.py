"""A C2PA manifest checked by c2pa-python: validation, trust, and what it declares about AI.

The validation state (are the signature and the bindings intact?) and the trust state (does the
signer chain to an anchor the user supplied?) are kept apart: ``c2pa_trust`` is ``trusted``,
``valid-untrusted``, ``invalid`` or ``unchecked``, and ``c2pa_valid`` keeps the validation state
alone. Trusted is only ever said against the user's anchors, which replace any the SDK may
carry. What the manifest declares is read from the actions of the active manifest, then of its
ingredients' manifests (walked through the store, each once): ``generated`` for
``trainedAlgorithmicMedia`` on ``c2pa.created``/``c2pa.opened``, ``edited`` for
``compositeWithTrainedAlgorithmicMedia`` or an AI source type on any other action.

The manifest is untrusted input: reading it never fetches anything (no remote manifests, no
OCSP), a manifest over ``MAX_MANIFEST`` bytes is not handed to the SDK, and every failure ends
as a reason in ``error``, never as an exception.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass

MAX_MANIFEST = 32 * 1024 * 1024  # bytes of C2PA data the SDK is given to parse
MAX_WALK = 64  # manifests of one store whose actions are read
MIME = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp", "HEIF": "image/heif",
        "AVIF": "image/avif", "TIFF": "image/tiff"}
GENERATED, EDITED = "trainedAlgorithmicMedia", "compositeWithTrainedAlgorithmicMedia"
_CONTEXTS: dict[str | None, object] = {}  # one c2pa Context per set of anchors, per process


@dataclass
class C2paFacts:
    trust: str = "unchecked"  # trusted / valid-untrusted / invalid / unchecked
    failures: str | None = None  # the SDK's failure codes, space-separated
    claim_generator: str | None = None
    ai: str | None = None  # generated / edited
    ai_in: str | None = None  # active / ingredient
    generated_by: str | None = None  # softwareAgent of the AI action that says generated
    edited_by: str | None = None
    error: str | None = None

    @property
    def valid(self) -> bool | None:
        """The validation state alone (trust aside): the former ``c2pa_valid``."""
        return {"trusted": True, "valid-untrusted": True, "invalid": False}.get(self.trust)


def _context(c2pa, anchors: str | None):
    if anchors not in _CONTEXTS:
        settings: dict = {"verify": {"remote_manifest_fetch": False, "ocsp_fetch": False,
                                     "verify_trust": True}}
        if anchors:
            settings["trust"] = {"trust_anchors": anchors}
        _CONTEXTS[anchors] = c2pa.Context.from_dict(settings)
    return _CONTEXTS[anchors]


def _source_type(action: dict) -> str | None:
    params = action.get("parameters")
    value = action.get("digitalSourceType") or (
        params.get("com.adobe.digitalSourceType") if isinstance(params, dict) else None)
    return value.rstrip("/").rsplit("/", 1)[-1] if isinstance(value, str) else None


def _agent(action: dict, agents: object) -> str | None:
    agent = action.get("softwareAgent")
    index = action.get("softwareAgentIndex")
    if agent is None and isinstance(index, int) and isinstance(agents, list) and 0 <= index < len(agents):
        agent = agents[index]
    if isinstance(agent, dict):
        agent = agent.get("name")
    return agent[:200] if isinstance(agent, str) and agent.strip() else None


def _declared(manifest: dict) -> tuple[str | None, str | None, str | None]:
    """(generated / edited / None, the generating agent, the editing agent) from the actions."""
    kind = generated_by = edited_by = None
    assertions = manifest.get("assertions")
    for assertion in assertions if isinstance(assertions, list) else []:
        if not isinstance(assertion, dict) or not str(assertion.get("label", "")).startswith("c2pa.actions"):
            continue
        data = assertion.get("data")
        actions = data.get("actions") if isinstance(data, dict) else None
        for action in actions if isinstance(actions, list) else []:
            if not isinstance(action, dict):
                continue
            source = _source_type(action)
            if source == GENERATED and action.get("action") in ("c2pa.created", "c2pa.opened"):
                kind, generated_by = "generated", generated_by or _agent(action, data.get("softwareAgents"))
            elif source in (GENERATED, EDITED):
                kind = kind or "edited"
                edited_by = edited_by or _agent(action, data.get("softwareAgents"))
    return kind, generated_by, edited_by


def _claim_generator(manifest: dict) -> str | None:
    gen = manifest.get("claim_generator")
    info = manifest.get("claim_generator_info")
    if not gen and isinstance(info, list) and info and isinstance(info[0], dict):
        gen = " ".join(str(info[0].get(k, "")) for k in ("name", "version")).strip()
    return str(gen)[:200] if gen else None


def _walk(store: dict, facts: C2paFacts) -> None:
    """The active manifest's claim generator; the AI declaration of the active manifest, else
    the strongest of its ingredients' manifests (breadth first, each manifest once)."""
    manifests = store.get("manifests")
    manifests = manifests if isinstance(manifests, dict) else {}
    active = store.get("active_manifest")
    if not isinstance(active, str) or not isinstance(manifests.get(active), dict):
        return
    facts.claim_generator = _claim_generator(manifests[active])
    queue, seen = [active], {active}
    while queue and len(seen) <= MAX_WALK:
        label = queue.pop(0)
        manifest = manifests[label]
        kind, generated_by, edited_by = _declared(manifest)
        if kind and (facts.ai is None or (kind == "generated" and facts.ai_in == "ingredient"
                                          and facts.ai == "edited")):
            facts.ai, facts.ai_in = kind, "active" if label == active else "ingredient"
        facts.generated_by = facts.generated_by or generated_by
        facts.edited_by = facts.edited_by or edited_by
        if facts.ai_in == "active":
            break  # the active manifest's own declaration is the one reported
        ingredients = manifest.get("ingredients")
        for ingredient in ingredients if isinstance(ingredients, list) else []:
            child = ingredient.get("active_manifest") if isinstance(ingredient, dict) else None
            if isinstance(child, str) and child not in seen and isinstance(manifests.get(child), dict):
                seen.add(child)
                queue.append(child)


def _failures(results: object) -> str | None:
    if not isinstance(results, dict):
        return None
    groups = [results.get("activeManifest")]
    deltas = results.get("ingredientDeltas")
    if isinstance(deltas, list):
        groups += [d.get("validationDeltas") for d in deltas if isinstance(d, dict)]
    codes: list[str] = []
    for group in groups:
        entries = group.get("failure") if isinstance(group, dict) else None
        for entry in entries if isinstance(entries, list) else []:
            code = entry.get("code") if isinstance(entry, dict) else None
            if isinstance(code, str) and code not in codes:
                codes.append(code)
    return " ".join(codes)[:300] or None


def check(data: bytes, fmt: str | None, manifest_size: int, anchors: str | None) -> C2paFacts:
    """The facts of the C2PA manifest embedded in ``data`` (``manifest_size`` bytes of it, as
    found by the container walk), against ``anchors`` (PEM) if given. Never raises."""
    facts = C2paFacts()
    try:
        import c2pa
    except ImportError:
        facts.error = "C2PA not checked: c2pa-python is not installed (pip install c2pa-python)"
        return facts
    if manifest_size > MAX_MANIFEST:
        facts.error = f"C2PA not checked: manifest of {manifest_size} bytes is over {MAX_MANIFEST}"
        return facts
    try:
        context = _context(c2pa, anchors)
    except Exception as exc:  # the SDK refused the settings (e.g. the anchors)
        facts.error = f"C2PA not checked: trust settings refused: {type(exc).__name__}: {exc}"[:300]
        return facts
    try:
        with c2pa.Reader(MIME.get(fmt or ""), io.BytesIO(data), context=context) as reader:
            store = json.loads(reader.json())
    except c2pa.C2paError.NotSupported as exc:
        facts.error = f"C2PA not checked: {exc}"[:300]
        return facts
    except c2pa.C2paError as exc:  # a manifest the SDK cannot parse or verify: not a valid one
        facts.trust = "invalid"
        facts.error = f"C2PA: {exc}"[:300]  # the message names the kind: "Verify: ..."
        return facts
    except Exception as exc:  # the SDK's JSON too deep or too big, a binding's own failure
        facts.error = f"C2PA not checked: {type(exc).__name__}: {exc}"[:300]
        return facts
    if not isinstance(store, dict):
        facts.error = "C2PA not checked: the SDK returned no manifest store"
        return facts
    state = str(store.get("validation_state") or "")
    facts.trust = {"Trusted": "trusted" if anchors else "valid-untrusted", "Valid": "valid-untrusted",
                   "Invalid": "invalid"}.get(state, "unchecked")
    if facts.trust == "unchecked":
        facts.error = f"C2PA not checked: unknown validation state {state[:40]!r}"
    facts.failures = _failures(store.get("validation_results"))
    _walk(store, facts)
    return facts
