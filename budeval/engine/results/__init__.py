"""The OpenCompass engine's result reader: a run folder in, typed metric, status and prediction records out."""

from budeval.engine.results.run import OpenCompassRun, parse_run, score_presence

__all__ = ["OpenCompassRun", "parse_run", "score_presence"]
