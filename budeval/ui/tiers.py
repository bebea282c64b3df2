"""Significance tiers of the leaderboard: each model against the leader with the regression gate's own tests.

Per dataset both cover, the leader's evaluation is the baseline and the model's the candidate: the store pairs their
examples in one query for the whole page (``paired_cells``), :func:`budeval.decisions.gate.paired_test` tests each
dataset (McNemar / bootstrap), the p-values are corrected across the model's datasets (Holm, as the gate does) and
:func:`~budeval.decisions.gate.classify` / :func:`~budeval.decisions.gate.overall` give the verdict. Tier 1: the
leader and every model not significantly behind it (no dataset a ``regression``); tier 2: significantly behind on at
least one dataset. Datasets whose example sets differ (or mix verdicts and numeric scores) are left out, as the gate
would refuse them; a model with none left is ``untested``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel

from budeval.decisions import stats
from budeval.decisions.gate import GateOptions, PairedDataset, Verdict, classify, overall, paired_test
from budeval.storage.queries import LeaderboardRow


class Tier(BaseModel):
    """A leaderboard row's standing against the leader: ``tier`` (1, 2, or None when untested), the gate's overall
    verdict of the model as candidate against the leader, and per dataset tested its verdict."""

    tier: int | None
    verdict: Verdict | None = None
    leader: bool = False
    datasets: dict[str, Verdict] = {}

    @property
    def label(self) -> str:
        if self.leader:
            return "leader"
        if self.tier is None:
            return "untested"
        return "tied with leader" if self.tier == 1 else "behind leader"


def _comparable(pairs: PairedDataset | None) -> bool:
    return pairs is not None and pairs.paired > 0 and not (pairs.only_baseline or pairs.only_candidate or pairs.mixed)


def tiers(store: Any, leader: LeaderboardRow | None, rows: Sequence[LeaderboardRow],
          options: GateOptions | None = None) -> list[Tier]:
    """One :class:`Tier` per row of ``rows`` against ``leader`` (rank 1 of the same leaderboard)."""
    options = options or GateOptions()
    if leader is None:
        return [Tier(tier=None) for _ in rows]
    asks: list[tuple[int, tuple[str, str, str], tuple[str, str, str]]] = []
    for i, row in enumerate(rows):
        if row.model == leader.model and row.metric == leader.metric:
            continue
        for dataset, eval_id in row.eval_ids.items():
            base = leader.eval_ids.get(dataset)
            if base is not None and (base, leader.model) != (eval_id, row.model):
                asks.append((i, (base, leader.model, dataset), (eval_id, row.model, dataset)))
    found = store.paired_cells([(b, c) for _, b, c in asks]) if asks else []
    per_row: dict[int, list[PairedDataset]] = {}
    for (i, _, _), pairs in zip(asks, found, strict=True):
        if pairs is not None and _comparable(pairs):
            per_row.setdefault(i, []).append(pairs)
    out: list[Tier] = []
    for i, row in enumerate(rows):
        if row.model == leader.model and row.metric == leader.metric:
            out.append(Tier(tier=1, leader=True))
            continue
        tested = per_row.get(i, [])
        if not tested:
            out.append(Tier(tier=None))
            continue
        raw = [paired_test(p, options) for p in tested]
        adjusted = stats.adjust([r["p_value"] for r in raw], options.correction)
        verdicts = {
            p.dataset: classify(r["delta"], r["ci_low"], r["ci_high"], p_adj, options)
            for p, r, p_adj in zip(tested, raw, adjusted, strict=True)
        }
        verdict = overall(list(verdicts.values()))
        out.append(Tier(tier=2 if verdict == "regression" else 1, verdict=verdict, datasets=verdicts))
    return out
