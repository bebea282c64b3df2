"""The one masking function for text that leaves a run: log excerpts and messages in events, history and tables.

A run's output may print what it was given (a key in a traceback, a URL with a password, an ``Authorization``
header). Every excerpt producer goes through :func:`redact`: it is applied where a
:class:`~budeval.backends.base.RunState` is made (any backend) and where a ``RunFailedError`` carries an excerpt.
Mask **before** cutting: a cut inside ``api_key=...`` leaves a tail no pattern recognises (callers redact the whole
text, then keep its end: :func:`budeval.engine.results.layout.excerpt`).

What is recognised (the formats tracebacks, HTTP clients and environment dumps print):

* values of credential-like names, in ``NAME=value``, ``NAME: value``, ``'NAME': 'value'``, ``"NAME": "value"``
  (also with escaped quotes inside a JSON string), ``NAME = 'value'``: a name whose last part is ``key``,
  ``apikey``, ``secret``, ``token``, ``password``/``passwd``/``pwd``, ``credential(s)``, ``auth``/``authorization``
  -- so ``OPENAI_API_KEY``, ``HF_TOKEN``, ``AWS_SECRET_ACCESS_KEY``, ``client_secret``, ``access_token``,
  ``DB_PASSWORD``, OpenCompass' ``key=`` -- with an optional scheme word (``Bearer``/``Basic``/``Token``/``Digest``);
* token formats on their own: ``sk-...`` (OpenAI), ``hf_...`` (Hugging Face), ``AKIA``/``ASIA`` + 16 (AWS access
  key ids), JWTs (``eyJ...``.``...``.``...``), ``Bearer <token>``;
* URL user information (``scheme://user:password@host``, ``scheme://token@host``; up to the last ``@`` before the
  path, so a password holding ``@`` is masked whole).

Not recognised: a bare high-entropy string with no name or known prefix (pass it in ``known`` when the caller holds
it). Masking errs on the side of masking (``sort_key=x`` is masked too).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_NAMED = re.compile(
    # the last part of the name (after start, ``_``, ``.``, ``-`` or any non-alphanumeric); what comes before it is
    # left as it is, so each position is tried once (no nested repetition: linear time on any text)
    r"(?i)(?<![a-z0-9])(api[_-]?key|apikey|key|secret|token|password|passwd|pwd|credentials?|auth|authorization)"
    r"((?:\\?[\"'])?\s*[:=]\s*(?:\\?[\"'])?)"  # separator, quotes (escaped inside a JSON string) included
    r"((?:bearer|basic|token|digest)\s+)?"  # an HTTP authorization scheme
    r"([^\s\"'\\,;&}\]]+)"  # the value
)
_TOKENS = re.compile(
    r"\b(sk-|hf_)[A-Za-z0-9_\-]{8,}"
    r"|\b(AKIA|ASIA)[A-Z0-9]{16}\b"
    r"|\b(eyJ)[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]*"
)
_BEARER = re.compile(r"(?i)\b(bearer\s+)(?!\*\*\*)\S+")
_USERINFO = re.compile(r"(?i)(?<![a-z0-9+.\-])([a-z][a-z0-9+.\-]*://)[^\s/?#]*@")  # a scheme starts once per run


def redact(text: str, known: Iterable[str] = ()) -> str:
    """``text`` with what looks like a credential masked (see the module docstring: ``OPENAI_API_KEY=***``,
    ``sk-***``, ``Bearer ***``, ``scheme://***@host``), and every value of ``known`` (secrets the caller holds, 6+
    characters) replaced by ``***``."""
    for value in known:
        if value and len(value) >= 6:
            text = text.replace(value, "***")
    text = _TOKENS.sub(lambda m: (m.group(1) or m.group(2) or m.group(3)) + "***", text)
    text = _NAMED.sub(lambda m: f"{m.group(1)}{m.group(2)}{m.group(3) or ''}***", text)
    text = _BEARER.sub(lambda m: f"{m.group(1)}***", text)
    return _USERINFO.sub(lambda m: f"{m.group(1)}***@", text)
