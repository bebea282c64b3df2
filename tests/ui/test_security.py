"""Who may use the UI: login and logout in the browser (an HttpOnly, SameSite=Strict cookie), unauthenticated and
forged requests refused, and state-changing posts refused without the session's CSRF token or from another site --
the last one by a real cross-site form in Chromium."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import httpx

from budeval.storage.base import EvaluationRecord
from budeval.ui.session import COOKIE
from budeval.workflow import names
from tests.service.support import FakeState, Status
from tests.ui.conftest import TOKEN, Served, Tab
from tests.ui.support import FAILED, RUNNING


def _cancels(served: Served) -> int:
    """Cancel events raised so far (other tests of the folder may have raised one before)."""
    return len([r for r in served.workflows.raised if r[1] == names.CANCEL_EVENT])


def _session(served: Served) -> tuple[httpx.Client, str]:
    """A logged-in HTTP client and its CSRF token (read from a page, as the browser would)."""
    client = httpx.Client(base_url=served.url)
    answer = client.post("/ui/login", data={"token": TOKEN, "next": "/ui/leaderboard"})
    assert answer.status_code == 303 and COOKIE in answer.cookies
    page = client.get("/ui/evals/ui-failed")
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', page.text)
    assert found is not None
    return client, found.group(1)


def test_login_sets_a_strict_httponly_cookie_and_logout_ends_it(tab: Tab) -> None:
    page = tab.page
    tab.go("/ui/leaderboard")
    assert "/ui/login" in page.url  # no session: the login form, not the data
    page.fill("#token", "not-the-token")
    page.click("button[type=submit]")
    assert page.locator("p.error").inner_text() == "That token is not valid."
    tab.errors.clear()  # the refused login answers 401, which Chromium logs on the console
    tab.login()
    tab.shot("logged-in")
    [cookie] = [c for c in page.context.cookies() if c["name"] == COOKIE]
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict" and cookie["path"] == "/ui"
    assert TOKEN not in cookie["value"]
    assert page.evaluate("document.cookie") == ""  # not readable by scripts
    page.click("form.logout button")
    page.wait_for_url("**/ui/login")
    assert not [c for c in page.context.cookies() if c["name"] == COOKIE]
    tab.go("/ui/examples")
    assert "/ui/login" in page.url
    # A copy of the cookie (taken before the logout) ends with it: the server refuses the logged-out session.
    copied = httpx.get(tab.url + "/ui/examples", cookies={COOKIE: cookie["value"]}, follow_redirects=False)
    assert copied.status_code == 303 and "/ui/login" in copied.headers["location"]


def test_unauthenticated_and_forged_requests_are_refused(served: Served) -> None:
    before = _cancels(served)
    client = httpx.Client(base_url=served.url)
    for path in ("/ui/leaderboard", "/ui/evals/ui-failed", "/ui/compare?a=ui-ck-10&b=ui-ck-40", "/ui/examples"):
        answer = client.get(path)
        assert answer.status_code == 303 and answer.headers["location"].startswith("/ui/login?next=")
        assert "ui-ck-10" not in answer.text
    assert client.get("/ui/evals/ui-failed/status.json").status_code == 401
    with httpx.Client(base_url=served.url, cookies={COOKIE: "9999999999.abc.0123456789abcdef"}) as forger:
        assert forger.get("/ui/leaderboard").status_code == 303
    assert client.post("/ui/evals/ui-running/cancel", data={"csrf": "x"}).status_code == 401
    assert client.post("/ui/login", data={"token": "wrong"}).status_code == 401
    assert client.get("/ui/static/../routes.py").status_code == 404
    assert _cancels(served) == before
    client.close()


def test_posts_without_the_csrf_token_or_from_another_origin_are_refused(served: Served) -> None:
    before = _cancels(served)
    client, csrf = _session(served)
    assert client.post(f"/ui/evals/{RUNNING}/cancel").status_code == 403
    assert client.post(f"/ui/evals/{RUNNING}/cancel", data={"csrf": "0" * 64}).status_code == 403
    other_site = client.post(f"/ui/evals/{RUNNING}/cancel", data={"csrf": csrf},
                             headers={"origin": "http://attacker.test"})
    assert other_site.status_code == 403
    assert client.post("/ui/logout", data={}).status_code == 403
    assert _cancels(served) == before
    pages = client.get("/ui/leaderboard")
    assert pages.status_code == 200  # still logged in: the refused logout did nothing
    assert "default-src 'self'" in pages.headers["content-security-policy"]
    client.close()


def test_a_cross_site_form_in_the_browser_cannot_cancel(tab: Tab, served: Served) -> None:
    """A page on another site posts a form to the cancel route of a logged-in user's browser: SameSite=Strict keeps
    the session cookie off the request (and it has no CSRF token), so the UI refuses it."""
    before = _cancels(served)
    tab.login()
    target = f"{served.url}/ui/evals/{RUNNING}/cancel"
    attack = (f'<html><body><form id="f" method="post" action="{target}"><input name="csrf" value="guess">'
              '</form><script>document.getElementById("f").submit()</script></body></html>')
    tab.page.route("http://attacker.test/**", lambda route: route.fulfill(body=attack, content_type="text/html"))
    with tab.page.expect_navigation(url=target):
        tab.page.goto("http://attacker.test/")
    assert '"unauthorized"' in tab.page.content()
    tab.errors.clear()  # the refused post answers 401, which Chromium logs on the console
    assert _cancels(served) == before


def test_non_ascii_cookie_or_csrf_field_is_refused_not_a_server_error(served: Served) -> None:
    """A forged cookie or CSRF field with a non-ASCII character is refused (redirect to the login / 403), never a
    500: the signature comparison once raised TypeError for non-ASCII text."""
    before = _cancels(served)
    raw = f"{COOKIE}=9999999999.abc.\u00e9".encode("latin-1")  # the byte 0xe9, as a client may send it
    with httpx.Client(base_url=served.url) as forger:
        answer = forger.get("/ui/leaderboard", headers={"cookie": raw})
        assert answer.status_code == 303
    client, _ = _session(served)
    assert client.post(f"/ui/evals/{RUNNING}/cancel", data={"csrf": "\u00e9" * 64}).status_code == 403
    assert _cancels(served) == before
    client.close()


def test_the_live_status_sends_an_ended_session_to_the_login_form(tab: Tab, served: Served) -> None:
    """The evaluation page polls its status while the evaluation runs; when the session ends meanwhile (logout in
    another tab, expiry, a rotated token) the poll's 401 takes the page to the login form instead of leaving a stale
    status on screen that looks live (it once ignored the 401 and polled on silently)."""
    eval_id = "ui-running-session"
    served.store.record_evaluation(EvaluationRecord(
        eval_id=eval_id, status="running", model_name="smollm2", datasets=["tiny_mcq"], created_at=datetime.now(UTC)))
    served.workflows.instances[eval_id] = FakeState(eval_id, Status.RUNNING, created_at=datetime.now(UTC),
                                                    last_updated_at=datetime.now(UTC))
    tab.login()
    tab.go(f"/ui/evals/{eval_id}")
    assert tab.page.inner_text("#status") == "running"
    tab.page.context.clear_cookies()
    tab.page.wait_for_url(f"**/ui/login?next=%2Fui%2Fevals%2F{eval_id}", timeout=20_000)
    tab.errors.clear()  # Chromium logs the refused poll (401) on the console


def test_a_crafted_link_cannot_put_text_in_the_cancel_notice(served: Served) -> None:
    """The cancel button's answer shows its outcome on the evaluation page through the redirect's query; a crafted
    link with its own ``?cancel=`` text (a phishing line on a trusted page) shows nothing: the notice is signed by
    the server (it once rendered any text from the URL)."""
    client, csrf = _session(served)
    lure = "Your session expired: log in again at attacker.test"
    for query in (f"cancel={lure}", f"cancel={lure}&sig=" + "0" * 64, f"cancel={lure}&sig=\u00e9"):
        answer = client.get(f"/ui/evals/{FAILED}?{query}")
        assert answer.status_code == 200 and "attacker.test" not in answer.text
    refused = client.post(f"/ui/evals/{FAILED}/cancel", data={"csrf": csrf}, follow_redirects=True)
    assert "Cancel: evaluation" in refused.text and "cannot be cancelled" in refused.text  # the server's own notice
    client.close()


def test_logging_out_of_an_ended_session_goes_to_the_login_form(served: Served) -> None:
    """"Log out" on a page left open past its session (expiry, a rotated token) leads to the login form and drops
    the stale cookie, like a logout (it once answered a JSON 401); a live session still needs its CSRF token."""
    for cookie in ("1000.abc.0123", "9999999999.abc.0123456789abcdef"):
        with httpx.Client(base_url=served.url, cookies={COOKIE: cookie}) as stale:
            answer = stale.post("/ui/logout", data={"csrf": "x"})
            assert answer.status_code == 303 and answer.headers["location"] == "/ui/login"
            assert f'{COOKIE}=""' in answer.headers["set-cookie"] and "Max-Age=0" in answer.headers["set-cookie"]
    client, _ = _session(served)
    assert client.post("/ui/logout", data={}).status_code == 403
    client.close()
