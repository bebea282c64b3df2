"""budeval: Kubernetes-native orchestrator for LLM evaluations."""

__version__ = "0.1.0"
