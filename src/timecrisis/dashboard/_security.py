"""Who may act, and how an action is protected from cross-site requests.

The dashboard reads freely (bind it to loopback or put it behind your own auth) and acts only
when started with actions enabled, and then only for a client that proves it knows the token:

- **Scripts** send `Authorization: Bearer <token>`. A browser never attaches that header on its
  own, so such a request cannot be forged cross-site and needs nothing more.
- **Browsers** log in once (`POST /login` with the token) and get a session cookie: an HMAC of
  the token, `HttpOnly` and `SameSite=Strict`. A cookie is sent by the browser on its own, so
  every action form also carries a CSRF field (another HMAC of the token, printed only into the
  dashboard's own pages, which another site cannot read), and the request's `Origin` (or
  `Referer`) and `Sec-Fetch-Site` headers must not name another site.

Deriving both values from the token keeps the server stateless (any replica accepts them, a
restart logs no one out) and changing the token logs everyone out. Every comparison is
constant-time. Actions are POST only; a GET never changes anything.
"""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import urlsplit

from starlette.requests import Request

SESSION_COOKIE = "timecrisis_dashboard"
CSRF_FIELD = "csrf"


class Guard:
    def __init__(self, *, actions_enabled: bool, token: str | None) -> None:
        if actions_enabled and not token:
            raise ValueError(
                "actions need a token: pass token=... (the CLI: --token or "
                "TIMECRISIS_DASHBOARD_TOKEN)"
            )
        self.actions_enabled = actions_enabled
        self._token = token or ""
        self.session_value = self._derive("session") if actions_enabled else ""
        self.csrf_value = self._derive("csrf") if actions_enabled else ""

    def _derive(self, purpose: str) -> str:
        key = self._token.encode()
        return hmac.new(key, f"timecrisis-dashboard:{purpose}".encode(), hashlib.sha256).hexdigest()

    def token_matches(self, candidate: str) -> bool:
        return self.actions_enabled and hmac.compare_digest(
            candidate.encode(), self._token.encode()
        )

    def has_bearer(self, request: Request) -> bool:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and self.token_matches(value.strip())

    def has_session(self, request: Request) -> bool:
        cookie = request.cookies.get(SESSION_COOKIE, "")
        return self.actions_enabled and hmac.compare_digest(
            cookie.encode(), self.session_value.encode()
        )

    def can_act(self, request: Request) -> bool:
        """Whether pages should offer the action buttons to this client."""
        return self.actions_enabled and (self.has_session(request) or self.has_bearer(request))

    def refuse_action(self, request: Request, csrf: str | None) -> str | None:
        """Why this action request is refused, or None when it may go ahead."""
        if not self.actions_enabled:
            return "this dashboard is read-only (start it with --enable-actions and a token)"
        if self.has_bearer(request):
            return None
        if not self.has_session(request):
            return "log in with the dashboard's token first"
        cross_site = refuse_cross_site(request)
        if cross_site is not None:
            return cross_site
        if csrf is None or not hmac.compare_digest(csrf.encode(), self.csrf_value.encode()):
            return "the form's CSRF token is missing or wrong: reload the page and try again"
        return None


def refuse_cross_site(request: Request) -> str | None:
    """Why a state-changing browser request looks cross-site, or None.

    `Sec-Fetch-Site` (sent by every current browser) must be `same-origin` or `none` (typed by
    the user). `Origin`, else `Referer`, must name this host. Only the host and port are
    compared, not the scheme, so a TLS-terminating proxy in front does not break the check."""
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None and fetch_site not in ("same-origin", "none"):
        return f"cross-site request refused (Sec-Fetch-Site: {fetch_site})"
    source = request.headers.get("origin") or request.headers.get("referer")
    if source is None or source == "null":
        return None if fetch_site is not None else "request without Origin or Referer refused"
    host = request.headers.get("host", "")
    if urlsplit(source).netloc.lower() != host.lower():
        return "cross-origin request refused"
    return None


def local_path(target: str | None, root_path: str, fallback: str) -> str:
    """`target` if it is a path inside this dashboard (where to go back after an action),
    else `fallback`: never an open redirect to another site."""
    if (
        target
        and target.startswith(f"{root_path}/")
        and not target.startswith("//")
        and "\\" not in target
        and not any(ord(char) < 32 for char in target)
    ):
        return target
    return fallback


SECURITY_HEADERS = {
    # Scripts and styles come from the dashboard's own static files only: even if some text
    # escaped the templates' escaping, an inline script or handler would not run.
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "x-frame-options": "DENY",
    "cache-control": "no-store",
}
