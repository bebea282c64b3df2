"""Tiny datasets bundled with budeval (``.jsonl``), rendered by absolute path of this folder; small enough for CPU."""
