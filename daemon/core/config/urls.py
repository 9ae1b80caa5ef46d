"""Broker URLs: what makes one valid, and how one is shown without a secret in it."""

from __future__ import annotations

from urllib.parse import SplitResult, urlsplit


def broker_problem(broker: str) -> str | None:
    """Why `[mqtt] broker` cannot be used, or None; `embedded` and `none` are always fine."""
    if broker in ("embedded", "none"):
        return None
    try:
        url = urlsplit(broker)
        port = url.port  # raises ValueError for a port that is not a number in 0..65535
    except ValueError:
        return f"{redact(broker)} has a port that is not a number from 1 to 65535"
    if url.scheme not in ("mqtt", "mqtts"):
        return f"{redact(broker)}: the scheme must be mqtt:// or mqtts://"
    if url.username is not None or url.password is not None:
        return (
            "credentials do not belong in the broker URL (they would end up in logs and in "
            "`tektra status`); write the URL without them and set [mqtt] username and "
            "password_env or password_file"
        )
    if not url.hostname:
        return f"{redact(broker)} names no host (write mqtt://HOST:PORT)"
    if port == 0:
        return f"{redact(broker)} has a port that is not a number from 1 to 65535"
    if url.path not in ("", "/") or url.query or url.fragment:
        return f"{redact(broker)}: a broker URL is only mqtt://HOST:PORT (no path or query)"
    return None


def redact(url: str) -> str:
    """`url` with any password replaced by `***`: safe to log or to show in a status."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        parts, password = _loose(url), None
    if not parts.netloc or "@" not in parts.netloc:
        return url
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user = userinfo.split(":", 1)[0]
    shown = f"{user}:***" if password is not None or ":" in userinfo else user
    return parts._replace(netloc=f"{shown}@{hostport}").geturl()


def _loose(url: str) -> SplitResult:
    """Split without validating the port, so an invalid URL can still be redacted."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return SplitResult("", "", url, "", "")
    netloc, slash, path = rest.partition("/")
    return SplitResult(scheme, netloc, slash + path, "", "")
