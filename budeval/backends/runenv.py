"""The environment a local OpenCompass run gets: an allow-list of what it needs, plus that run's own key.

The service's environment holds its API token, every ``BUDEVAL_SECRET_*`` key, store DSNs and S3 keys; a run
executes a config built from a request (and, for a Hugging Face model, the model's own code), so it inherits none of
that. It gets the variables named here (exact names, or prefixes ending in ``*``), those the operator adds with
``run_env_passthrough``, and ``OPENAI_API_KEY`` when its request names a registered credential.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

#: What OpenCompass, PyTorch, Hugging Face and the C library read: paths, locale, caches, offline switches, threads,
#: GPUs, proxies and CA bundles. No ``BUDEVAL_*`` and no ``DAPR_*`` variable is here, nor any credential.
RUN_ENV_ALLOWED: tuple[str, ...] = (
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "LC_*", "TZ", "TMPDIR", "TERM",
    "PYTHONUNBUFFERED", "PYTHONIOENCODING", "PYTHONHASHSEED", "VIRTUAL_ENV",
    "HF_HOME", "HF_HUB_CACHE", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HF_DATASETS_CACHE", "HF_ENDPOINT",
    "HUGGINGFACE_HUB_CACHE", "TRANSFORMERS_CACHE", "TRANSFORMERS_OFFLINE", "TOKENIZERS_PARALLELISM",
    "TORCH_HOME", "XDG_CACHE_HOME", "COMPASS_DATA_CACHE", "TIKTOKEN_CACHE_DIR", "NLTK_DATA",
    "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
    "CUDA_VISIBLE_DEVICES", "CUDA_HOME", "NVIDIA_VISIBLE_DEVICES", "LD_LIBRARY_PATH",
    "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy",
    "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE",
)


def _matches(name: str, patterns: Iterable[str]) -> bool:
    for pattern in patterns:
        if pattern.endswith("*") and name.startswith(pattern[:-1]):
            return True
        if name == pattern:
            return True
    return False


def run_environment(
    environ: Mapping[str, str], extra_allowed: Iterable[str] = (), run_secrets: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The allow-listed part of ``environ`` (built-in list + ``extra_allowed``) plus ``run_secrets``."""
    allowed = (*RUN_ENV_ALLOWED, *extra_allowed)
    env = {k: v for k, v in environ.items() if _matches(k, allowed)}
    env.update(run_secrets or {})
    return env


_PLAIN_PART = re.compile(r"[a-z0-9]+(-[a-z0-9]+)*")
DEFAULT_SECRET_KEY = "api-key"  # noqa: S105 (the default key name of a SecretRef)


def _env_part(value: str) -> str:
    """``llm-keys`` -> ``LLM_KEYS`` (lower-case words joined by single ``-``); anything else -> ``x`` + the UTF-8 hex
    of ``value`` (``api_key`` -> ``x6170695F6B6579``). Neither form contains ``__`` or starts/ends with ``_``, and the
    two are told apart by the lower-case ``x``: the mapping is one-to-one."""
    if _PLAIN_PART.fullmatch(value):
        return value.upper().replace("-", "_")
    return "x" + value.encode("utf-8").hex().upper()


def secret_env_name(secret_name: str, key: str) -> str:
    """Where the local backend reads an endpoint's API key: ``BUDEVAL_SECRET_<NAME>_API_KEY`` for the default key
    ``api-key``, else ``BUDEVAL_SECRET_<NAME>__<KEY>`` (parts by :func:`_env_part`; e.g. ``llm-keys``/``api-key`` ->
    ``BUDEVAL_SECRET_LLM_KEYS_API_KEY``, ``llm-keys``/``other`` -> ``BUDEVAL_SECRET_LLM_KEYS__OTHER``).

    One-to-one: two different (name, key) pairs never read the same variable, so the policy's decision on the
    credential name holds (a ``key`` cannot reach into another credential's variable). The default form holds no
    ``__``, every other form does, and the part before the first ``__`` is the name."""
    name = _env_part(secret_name)
    if key == DEFAULT_SECRET_KEY:
        return f"BUDEVAL_SECRET_{name}_API_KEY"
    return f"BUDEVAL_SECRET_{name}__{_env_part(key)}"
