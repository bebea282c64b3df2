"""The UI's login session and CSRF tokens: stateless, signed with a key derived from the service's API token.

* Login: the form posts the API token; when it matches (constant time), the answer sets the cookie
  :data:`COOKIE` = ``<expiry>.<nonce>.<signature>`` (HMAC-SHA256 over ``expiry.nonce``), ``HttpOnly``,
  ``SameSite=Strict``, ``Path=/ui`` (``Secure`` over HTTPS). The token itself never goes into the cookie, a page or a
  log; changing the token ends every session.
* CSRF: each session's token is HMAC(key, ``csrf:<nonce>``); every state-changing form carries it (field
  :data:`CSRF_FIELD`) and the server compares it in constant time; a request whose ``Origin`` names another site is
  refused as well (docs/ui.md "Security").
* Logout ends the session in this process: its nonce is kept (until the cookie would have expired anyway) and a
  cookie with it is refused from then on, so a copied cookie does not outlive the logout. The list is per process:
  with several replicas, rotating the API token ends every session everywhere.
* Without an API token (a service started without one) the UI is open like the API, with a process-random key for
  the CSRF tokens.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass

COOKIE = "budeval_ui"
CSRF_FIELD = "csrf"
#: How long a session lasts (seconds).
SESSION_S = 12 * 3600
_OPEN_NONCE = "open"


@dataclass(frozen=True)
class Session:
    """A valid session: its nonce (the CSRF token is derived from it)."""

    nonce: str


class Sessions:
    """Issues and checks session cookies and CSRF tokens for one API token (None: no login needed)."""

    def __init__(self, api_token: str | None) -> None:
        self.api_token = api_token
        seed = api_token.encode("utf-8") if api_token else secrets.token_bytes(32)
        self._key = hashlib.sha256(b"budeval-ui-session\0" + seed).digest()
        self._ended: dict[str, float] = {}  # nonce -> its cookie's expiry (logged out before it)
        self._lock = threading.Lock()

    @property
    def open(self) -> bool:
        """No API token: every request is a session."""
        return self.api_token is None

    def _sign(self, text: str) -> str:
        return hmac.new(self._key, text.encode("utf-8"), hashlib.sha256).hexdigest()

    def token_ok(self, given: str) -> bool:
        """Does ``given`` match the API token (constant time)?"""
        if self.api_token is None:
            return True
        return hmac.compare_digest(given.strip().encode("utf-8", "surrogateescape"), self.api_token.encode("utf-8"))

    def issue(self, now: float | None = None) -> str:
        """A new session cookie value."""
        expiry = int((now if now is not None else time.time()) + SESSION_S)
        body = f"{expiry}.{secrets.token_urlsafe(18)}"
        return f"{body}.{self._sign(body)}"

    def check(self, cookie: str | None, now: float | None = None) -> Session | None:
        """The session of a cookie value, or None (missing, forged, expired)."""
        if self.open:
            return Session(_OPEN_NONCE)
        if not cookie or cookie.count(".") != 2:
            return None
        expiry, nonce, signature = cookie.split(".")
        if not cookie.isascii() or not hmac.compare_digest(signature, self._sign(f"{expiry}.{nonce}")):
            return None
        if not expiry.isdigit() or int(expiry) < (now if now is not None else time.time()):
            return None
        with self._lock:
            if nonce in self._ended:
                return None
        return Session(nonce)

    def end(self, cookie: str | None, now: float | None = None) -> None:
        """Log out: the session of ``cookie`` (when valid) is refused from now on in this process. Ended sessions
        are forgotten once their cookies would have expired anyway."""
        session = self.check(cookie, now)
        if session is None or self.open or cookie is None:
            return
        at = now if now is not None else time.time()
        with self._lock:
            self._ended = {n: e for n, e in self._ended.items() if e >= at}
            self._ended[session.nonce] = float(cookie.split(".")[0])

    def csrf(self, session: Session) -> str:
        """The CSRF token of ``session``."""
        return self._sign(f"csrf:{session.nonce}")

    def notice(self, text: str) -> str:
        """The signature of a notice the server puts in a redirect's query (the cancel button's outcome), so that a
        crafted link cannot show text of its own on a page."""
        return self._sign(f"notice:{text}")

    def notice_ok(self, text: str, given: str | None) -> bool:
        """Did this server sign ``text`` (:meth:`notice`)? Constant time; non-ASCII signatures are refused."""
        return bool(given) and str(given).isascii() and hmac.compare_digest(str(given), self.notice(text))

    def csrf_ok(self, session: Session, given: str | None) -> bool:
        """Is ``given`` the CSRF token of ``session`` (constant time)? Non-ASCII text is refused, not compared
        (``hmac.compare_digest`` raises ``TypeError`` for it)."""
        return bool(given) and str(given).isascii() and hmac.compare_digest(str(given), self.csrf(session))


def same_origin(origin: str | None, host: str | None, scheme: str = "http") -> bool:
    """Whether a request's ``Origin`` header is this server. A missing ``Origin`` passes (the CSRF token decides); a
    present one must be ``http`` or ``https`` with this ``Host``, and when the request came over https (``scheme``),
    https too: a plain-http page of the same host (one an attacker on the network can write) is not this site.
    An https origin on a plain-http request passes: TLS ended at a proxy in front of the service."""
    if not origin:
        return True
    if origin == "null" or not host:
        return False
    origin_scheme, sep, rest = origin.partition("://")
    if not sep or origin_scheme not in ("http", "https") or rest.rstrip("/") != host:
        return False
    return not (scheme == "https" and origin_scheme != "https")
