"""Pure checks without a browser: every asset a template links ships in the package (package data, vendored with its
licence and the pin of scripts/vendor_ui_assets.sh), and the session cookie / CSRF logic (expiry, forgery, a changed
token, an open UI)."""

from __future__ import annotations

import re
import tomllib
from fnmatch import fnmatch
from pathlib import Path

from budeval.ui.render import render, static_version
from budeval.ui.session import Session, Sessions, same_origin

UI = Path(__file__).resolve().parents[2] / "budeval" / "ui"
REPO = UI.parents[1]


def test_every_linked_asset_ships_in_the_package() -> None:
    linked = {m for t in (UI / "templates").glob("*.html") for m in re.findall(r'"/ui/static/([^"?]+)', t.read_text())}
    assert {"ui.css", "ui.js", "curves.js", "vendor/uPlot.iife.min.js", "vendor/uPlot.min.css"} <= linked
    patterns = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["budeval"]
    for name in linked:
        assert (UI / "static" / name).is_file(), name
        assert any(fnmatch(f"ui/static/{name}", p) for p in patterns), name
    for template in (UI / "templates").glob("*.html"):
        assert any(fnmatch(f"ui/templates/{template.name}", p) for p in patterns)
        assert not re.search(r"(src|href)=\"https?://", template.read_text()), template  # nothing from elsewhere


def test_the_vendored_chart_library_is_the_pinned_one_with_its_licence() -> None:
    script = (REPO / "scripts" / "vendor_ui_assets.sh").read_text()
    pin = re.search(r'UPLOT=\(uplot (\S+) "(\S+)"\)', script)
    assert pin is not None
    versions = (UI / "static" / "vendor" / "VERSIONS").read_text().split()
    assert versions == ["uplot", pin.group(1), f"sha512-{pin.group(2)}"]
    assert "MIT" in (UI / "static" / "vendor" / "uPlot.LICENSE").read_text()
    assert (UI / "static" / "vendor" / "uPlot.iife.min.js").read_text().startswith("/*! https://github.com/leeoniya/uPlot")


def test_sessions_expire_refuse_forgeries_and_end_with_the_token() -> None:
    sessions = Sessions("token-1")
    cookie = sessions.issue(now=1000.0)
    session = sessions.check(cookie, now=2000.0)
    assert session is not None and sessions.check(cookie, now=1000.0 + 13 * 3600) is None  # 12 hours
    expiry, nonce, signature = cookie.split(".")
    assert sessions.check(f"{int(expiry) + 999}.{nonce}.{signature}", now=2000.0) is None  # a longer life: forged
    assert sessions.check(f"{expiry}.other.{signature}", now=2000.0) is None
    assert Sessions("token-2").check(cookie, now=2000.0) is None  # a new token ends every session
    assert sessions.csrf_ok(session, sessions.csrf(session))
    assert not sessions.csrf_ok(session, sessions.csrf(Session("someone-else")))
    assert not sessions.csrf_ok(session, None) and not sessions.csrf_ok(session, "")
    assert sessions.token_ok(" token-1 ") and not sessions.token_ok("token-")
    assert "token-1" not in cookie
    other = sessions.issue(now=1000.0)
    sessions.end(cookie, now=2000.0)  # logout: this session, and only it, ends in this process
    assert sessions.check(cookie, now=2001.0) is None and sessions.check(other, now=2001.0) is not None
    sessions.end("forged.cookie.value", now=2000.0)  # nothing to end
    assert sessions.check(other, now=2001.0) is not None


def test_an_open_ui_has_sessions_but_unguessable_csrf_tokens() -> None:
    one, two = Sessions(None), Sessions(None)
    session = one.check(None)
    assert session is not None and one.open
    assert one.csrf(session) != two.csrf(session)  # a process-random key


def test_origin_check() -> None:
    assert same_origin(None, "127.0.0.1:8080")
    assert same_origin("http://127.0.0.1:8080", "127.0.0.1:8080")
    assert not same_origin("http://attacker.test", "127.0.0.1:8080")
    assert not same_origin("null", "127.0.0.1:8080")
    # the scheme: an http page of the same host posting to an https server is not this site; TLS ended at a proxy is
    assert same_origin("https://ui.example", "ui.example", "https")
    assert not same_origin("http://ui.example", "ui.example", "https")
    assert same_origin("https://ui.example", "ui.example", "http")
    assert not same_origin("ftp://ui.example", "ui.example") and not same_origin("ui.example", "ui.example")


def test_non_ascii_cookies_and_csrf_tokens_are_refused_not_errors() -> None:
    """A forged cookie or CSRF field with non-ASCII characters is refused like any forgery (it once raised
    ``TypeError`` from ``hmac.compare_digest`` on ``str``, a 500 for any client)."""
    sessions = Sessions("token-1")
    cookie = sessions.issue(now=1000.0)
    expiry, nonce, _ = cookie.split(".")
    assert sessions.check(f"{expiry}.{nonce}.\u00e9", now=2000.0) is None
    assert sessions.check(f"{expiry}.\u00e9.abc", now=2000.0) is None
    session = sessions.check(cookie, now=2000.0)
    assert session is not None and not sessions.csrf_ok(session, "\u00e9" * 64)


def test_asset_links_change_with_the_assets() -> None:
    """Every asset link carries ``?v=`` of the packaged static files, and the version changes with any file's
    content: a browser's cached copy (an hour) of an older release's CSS/JavaScript is never used with new pages
    (the links were once bare, so an upgrade ran new pages with old scripts for up to an hour)."""
    files = {name: b"x" for name in ("ui.js", "ui.css")}
    assert static_version(files) != static_version({**files, "ui.js": b"y"})
    html = render("login.html", next="/ui/leaderboard", error=None, csrf="", open=False, path="").body.decode()
    links = re.findall(r'"/ui/static/([^"]+)"', html)
    assert links and all(re.fullmatch(r"[\w./-]+\?v=[0-9a-f]{12}", link) for link in links), links
    assert len({link.split("?v=")[1] for link in links}) == 1
