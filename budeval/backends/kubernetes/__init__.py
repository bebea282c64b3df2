"""Kubernetes job backend: ConfigMap + batch/v1 Job per run, one shared watch (see docs/kubernetes.md)."""

from budeval.backends.kubernetes.backend import KubernetesBackend

__all__ = ["KubernetesBackend"]
