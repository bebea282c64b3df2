"""What the run's own config says about names: read with ``ast`` from ``configs/{ts}_{pid}.py``, never executed.

Source: OpenCompass 0.5.4 ``cli/main.py`` dumps the whole config with mmengine's ``Config.dump`` as Python source of
literal ``dict(...)`` calls (``models=[dict(abbr=..., summarizer_abbr=...)]``, ``datasets=[dict(abbr=..., n=...)]``,
``summarizer=dict(summary_groups=[dict(name=..., subsets=[...])])``). budeval reads three facts from it:

- a model's ``summarizer_abbr`` is its column name in every summary while its files stay under its ``abbr``
  (``summarizers/default.py``), so summary columns are mapped back to the abbr;
- a dataset's ``n`` (replicas): with ``n > 1`` prediction key ``r * N + i`` is replica ``r`` of example ``i`` even
  when the evaluator wrote no per-replica details;
- the names of ``summary_groups``: summary rows of those names are averages, not tasks.

Anything unreadable (not Python, a value that is not a literal) is simply not known; nothing here raises.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MAX_CONFIG_BYTES = 16 << 20


@dataclass
class RunConfig:
    """``models``/``datasets``: the abbrs given in the top-level ``models=[...]``/``datasets=[...]`` (an entry
    without an explicit abbr is not listed); ``column_of_model``: summarizer_abbr -> abbr; ``replicas``: dataset
    abbr -> n (only n > 1); ``groups``: summary group names."""

    models: list[str] = field(default_factory=list)
    datasets: list[str] = field(default_factory=list)
    column_of_model: dict[str, str] = field(default_factory=dict)
    replicas: dict[str, int] = field(default_factory=dict)
    groups: set[str] = field(default_factory=set)


def read_run_config(path: Path | None) -> RunConfig:
    """The facts above from one dumped config (an empty RunConfig when there is none or it cannot be parsed)."""
    out = RunConfig()
    if path is None:
        return out
    try:
        if path.stat().st_size > MAX_CONFIG_BYTES:
            return out
        tree = ast.parse(path.read_text(encoding="utf-8", errors="replace"))
    except (OSError, SyntaxError, ValueError, RecursionError, MemoryError):
        return out
    for statement in tree.body:
        if isinstance(statement, ast.Assign) and len(statement.targets) == 1:
            target = statement.targets[0]
            if isinstance(target, ast.Name) and target.id in ("models", "datasets"):
                entries = _literal(statement.value)
                abbrs = [e["abbr"] for e in entries if isinstance(e, dict) and isinstance(e.get("abbr"), str)]
                getattr(out, target.id).extend(a for a in abbrs if a not in getattr(out, target.id))
    for node in ast.walk(tree):
        fields = _dict_fields(node)
        if not fields:
            continue
        abbr = fields.get("abbr")
        if isinstance(abbr, str):
            column = fields.get("summarizer_abbr")
            if isinstance(column, str) and column != abbr:
                out.column_of_model[column] = abbr
            n = fields.get("n")
            if isinstance(n, int) and not isinstance(n, bool) and n > 1:
                out.replicas[abbr] = n
        if "summary_groups" in fields:
            for group in fields["summary_groups"] if isinstance(fields["summary_groups"], list) else []:
                if isinstance(group, dict) and isinstance(group.get("name"), str):
                    out.groups.add(group["name"])
    return out


def _dict_fields(node: ast.AST) -> dict[str, Any]:
    """The literal fields of ``dict(k=v, ...)`` or ``{'k': v}`` (non-literal values left out)."""
    pairs: list[tuple[str, ast.AST]] = []
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict":
        pairs = [(k.arg, k.value) for k in node.keywords if k.arg is not None]
    elif isinstance(node, ast.Dict):
        pairs = [
            (k.value, v)
            for k, v in zip(node.keys, node.values, strict=True)
            if isinstance(k, ast.Constant) and isinstance(k.value, str)
        ]
    out: dict[str, Any] = {}
    for key, value in pairs:
        literal = _literal(value)
        if literal is not _UNKNOWN:
            out[key] = literal
    return out


_UNKNOWN = object()


def _literal(node: ast.AST) -> Any:
    """A constant, a list of literals, or a ``dict(...)``/``{}`` of literals; _UNKNOWN for anything else."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.List | ast.Tuple):
        return [v for v in (_literal(e) for e in node.elts) if v is not _UNKNOWN]
    if isinstance(node, ast.Call | ast.Dict):
        fields = _dict_fields(node)
        return fields if fields or isinstance(node, ast.Dict) or _is_dict_call(node) else _UNKNOWN
    return _UNKNOWN


def _is_dict_call(node: ast.AST) -> bool:
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict"
