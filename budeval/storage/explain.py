"""Why two evaluations differ: their provenance diff first, then their score diff (``budeval explain A B``).

Pure functions over two stored :class:`EvaluationRecord` rows (their identity components and provenance, see
budeval/engine/identity.py and budeval/workflow/provenance.py) and the store's :class:`CompareRow` score deltas.
The document (``explain``)::

    {"a": ID, "b": ID, "same_work": bool | None,     # equal resolved hashes; None: either identity unresolved
     "differences": [{"what": "generation.max_out_len", "a": 64, "b": 128, "note": "max_out_len 64 -> 128"}, ...],
     "same": ["same model commit sha256:...", ...],  # what a reader would suspect first, found equal
     "scores": [CompareRow, ...]}                    # B - A per (model, dataset, metric)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from budeval.storage.base import EvaluationRecord
from budeval.storage.queries import CompareRow

#: Environment fields compared run by run (the first run of each side that captured one).
ENVIRONMENT_KEYS = (
    "python",
    "torch",
    "cuda",
    "transformers",
    "opencompass",
    "gpu_names",
    "gpu_count",
    "driver",
    "node",
)


def explain(a: EvaluationRecord, b: EvaluationRecord, scores: Sequence[CompareRow]) -> dict[str, Any]:
    """The explanation document of A vs B (see the module doc)."""
    differences: list[dict[str, Any]] = []
    same: list[str] = []

    def diff(what: str, va: Any, vb: Any, note: str | None = None, same_note: str | None = None) -> None:
        if va != vb:
            differences.append({"what": what, "a": va, "b": vb, "note": note or f"{what} {_show(va)} -> {_show(vb)}"})
        elif same_note is not None and va not in (None, "", {}, []):
            same.append(same_note)

    ida, idb = _identity(a), _identity(b)
    _datasets(ida.get("datasets") or [], idb.get("datasets") or [], differences, same)
    gen_a = ida.get("generation") or _prov(a, "generation") or {}
    gen_b = idb.get("generation") or _prov(b, "generation") or {}
    for key in sorted(set(gen_a) | set(gen_b)):
        diff(
            f"generation.{key}",
            gen_a.get(key),
            gen_b.get(key),
            f"{key} {_show(gen_a.get(key))} -> {_show(gen_b.get(key))}",
        )
    if gen_a and gen_a == gen_b:
        same.append("same generation settings")
    diff(
        "model_commit",
        a.model_commit,
        b.model_commit,
        f"model {_short(a.model_commit)} -> {_short(b.model_commit)}",
        f"same model commit {_short(a.model_commit)}",
    )
    _model(ida.get("model") or {}, idb.get("model") or {}, differences)
    diff("model_source", a.model_source, b.model_source)
    diff("model_revision", a.model_revision, b.model_revision)
    diff(
        "engine_version",
        a.engine_version,
        b.engine_version,
        f"OpenCompass {a.engine_version or '-'} -> {b.engine_version or '-'}",
        f"same OpenCompass {a.engine_version}",
    )
    diff("image", _prov(a, "image"), _prov(b, "image"), same_note=f"same runner {_prov(a, 'image')}")
    diff("budeval_version", _prov(a, "budeval_version"), _prov(b, "budeval_version"))
    diff("budeval_commit", _prov(a, "budeval_commit"), _prov(b, "budeval_commit"))
    diff(
        "gpu",
        (a.gpu_type, a.gpu_count),
        (b.gpu_type, b.gpu_count),
        f"GPU {a.gpu_count} x {a.gpu_type or 'none'} -> {b.gpu_count} x {b.gpu_type or 'none'}",
        f"same GPU {a.gpu_count} x {a.gpu_type}" if a.gpu_type else None,
    )
    env_a, env_b = _environment(a), _environment(b)
    for key in ENVIRONMENT_KEYS:
        diff(f"environment.{key}", env_a.get(key), env_b.get(key))
    cfg_a, cfg_b = _prov(a, "config_hashes") or {}, _prov(b, "config_hashes") or {}
    if sorted(cfg_a.values()) != sorted(cfg_b.values()):
        differences.append(
            {"what": "config_hashes", "a": cfg_a, "b": cfg_b, "note": "rendered OpenCompass configs differ"}
        )
    elif cfg_a:
        same.append("same rendered OpenCompass configs")
    # An unresolved identity is unknown work: neither the same nor different (docs/workflow.md "The same work").
    same_work = None if not (a.params_hash and b.params_hash) else a.params_hash == b.params_hash
    if b.reused_from == a.eval_id or a.reused_from == b.eval_id:
        same.append(f"{b.eval_id if b.reused_from == a.eval_id else a.eval_id} reused the other's scores")
    return {
        "a": a.eval_id,
        "b": b.eval_id,
        "same_work": same_work,
        "identity": {"a": a.params_hash or None, "b": b.params_hash or None},
        "differences": differences,
        "same": same,
        "scores": [row.model_dump(mode="json") for row in scores],
    }


def render_explanation(doc: dict[str, Any]) -> str:
    """The explanation as text: identity verdict, provenance differences, what is the same, then score deltas."""
    ids = doc["identity"]
    verdict = {True: "the same work", False: "different work"}.get(
        doc["same_work"], "identity unresolved, cannot tell whether it is the same work"
    )
    lines = [f"{doc['a']} -> {doc['b']}: {verdict} (identity {_short(ids['a'])} / {_short(ids['b'])})"]
    lines.append("provenance:")
    lines += [f"  {d['note']}" for d in doc["differences"]] or ["  no difference recorded"]
    lines += [f"  {s}" for s in doc["same"]]
    lines.append("scores (B - A):")
    for row in doc["scores"]:
        a, b, delta = row["score_a"], row["score_b"], row["delta"]
        shown = "-" if delta is None else f"{delta:+.2f}"
        lines.append(f"  {row['dataset']:<24} {row['metric'] or '-':<16} {_num(a):>8} -> {_num(b):>8}  {shown}")
    if not doc["scores"]:
        lines.append("  no scores on either side")
    return "\n".join(lines)


def _datasets(
    a: list[dict[str, Any]], b: list[dict[str, Any]], differences: list[dict[str, Any]], same: list[str]
) -> None:
    by_a, by_b = {d["name"]: d for d in a}, {d["name"]: d for d in b}
    for name in sorted(set(by_a) | set(by_b)):
        da, db = by_a.get(name), by_b.get(name)
        if da is None or db is None:
            side = "B" if da is None else "A"
            differences.append({"what": f"datasets.{name}", "a": da, "b": db, "note": f"dataset {name} only in {side}"})
        elif da != db:
            what = "spec" if da.get("spec") != db.get("spec") else "content"
            differences.append({"what": f"datasets.{name}", "a": da, "b": db, "note": f"dataset {name} {what} changed"})
    common = sorted(set(by_a) & set(by_b))
    if common and all(by_a[n] == by_b[n] for n in common):
        same.append(f"same dataset contents ({', '.join(common)})")


#: Model identity keys named in a difference note. ``files`` and ``tokenizer`` get their own notes; the hub ``id``,
#: ``revision`` and ``commit`` are the record's model_source/model_revision/model_commit, compared above.
_MODEL_NOTES = {"mode": "mode", "kind": "model kind"}
_MODEL_OWN = {"files", "tokenizer", "id", "revision", "commit"}


def _model(a: dict[str, Any], b: dict[str, Any], differences: list[dict[str, Any]]) -> None:
    """Every difference of the two model identity components: mode (chat/base), kind, hub id and commit, a tokenizer
    given apart, then the folder files that changed."""
    if not a or not b:
        return
    for key in sorted((set(a) | set(b)) - _MODEL_OWN):
        if a.get(key) != b.get(key):
            label = _MODEL_NOTES.get(key, f"model {key}")
            differences.append(
                {
                    "what": f"model.{key}",
                    "a": a.get(key),
                    "b": b.get(key),
                    "note": f"{label} {_show(a.get(key))} -> {_show(b.get(key))}",
                }
            )
    ta, tb = a.get("tokenizer"), b.get("tokenizer")
    if ta != tb:
        differences.append(
            {"what": "model.tokenizer", "a": ta, "b": tb, "note": f"tokenizer {_tokenizer(ta)} -> {_tokenizer(tb)}"}
        )
    _model_files(a, b, differences)


def _tokenizer(value: Any) -> str:
    if not isinstance(value, dict):
        return "the model's own"
    if value.get("kind") == "hub":
        return f"{value.get('id')}@{_short(value.get('commit'))}"
    return "a folder (files " + ", ".join(sorted(value.get("files") or {})) + ")"


def _model_files(a: dict[str, Any], b: dict[str, Any], differences: list[dict[str, Any]]) -> None:
    fa, fb = a.get("files") or {}, b.get("files") or {}
    changed = sorted(n for n in set(fa) | set(fb) if fa.get(n) != fb.get(n))
    if fa and fb and changed:
        differences.append(
            {
                "what": "model.files",
                "a": {n: fa.get(n) for n in changed},
                "b": {n: fb.get(n) for n in changed},
                "note": f"model files changed: {', '.join(changed)}",
            }
        )


def _identity(record: EvaluationRecord) -> dict[str, Any]:
    value = record.provenance.get("identity")
    return value if isinstance(value, dict) else {}


def _prov(record: EvaluationRecord, key: str) -> Any:
    return record.provenance.get(key)


def _environment(record: EvaluationRecord) -> dict[str, Any]:
    envs = record.provenance.get("environments") or {}
    return next((envs[k] for k in sorted(envs) if isinstance(envs[k], dict)), {})


def _show(value: Any) -> str:
    return "-" if value is None else str(value)


def _short(value: str | None) -> str:
    if not value:
        return "unresolved"
    return value[:19] if value.startswith("sha256:") else value[:12]


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"
