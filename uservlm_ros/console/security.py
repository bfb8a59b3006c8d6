"""Who may use the console: the token rule, the same-origin rule for controls, the Host rule.

Pure Python (no web framework): the server asks these functions about each request.

- Bound to a loopback address (the default, 127.0.0.1) only this machine can connect, so no token
  is needed; the Host header must then name a loopback host (a request without one, HTTP/1.0,
  is refused), so a web page that rebinds its own DNS name to 127.0.0.1 cannot read the console.
- Bound to any other address (0.0.0.0, a LAN address: Pepper's tablet) every HTTP request and the
  WebSocket must carry the token: `?token=` once (the server answers with a cookie), the cookie,
  or `Authorization: Bearer <token>`.
- Control requests (ask, privacy) and the WebSocket must come from the console's own page: a
  cross-site Origin or `Sec-Fetch-Site: cross-site` is refused, and controls take JSON only (a
  cross-site form cannot send it without a CORS preflight, which the console never grants).
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
from pathlib import Path
from urllib.parse import urlsplit

from uservlm_ros.core.errors import ConfigError

COOKIE = "uservlm_console_token"
MIN_TOKEN_CHARS = 16


def is_loopback(host: str) -> bool:
    """True for an address only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    host = host.strip().strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to any interface


def token_required(bind_host: str) -> bool:
    return not is_loopback(bind_host)


def new_token() -> str:
    return secrets.token_urlsafe(24)


def read_token(path: str | Path) -> str:
    """The first line of a token file; raises ConfigError with the reason when unusable."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as error:
        raise ConfigError(f"token_file {str(path)!r} cannot be read: {error.strerror}") from error
    token = lines[0].strip() if lines else ""
    if len(token) < MIN_TOKEN_CHARS:
        raise ConfigError(
            f"token_file {str(path)!r}: the token (its first line) must have at least "
            f"{MIN_TOKEN_CHARS} characters"
        )
    return token


def access_token(token_file: str, host: str) -> str | None:
    """The token pages must bring: the first line of `token_file` when one is named, else a new
    random one when bound to a non-loopback `host`, else None (no token)."""
    if token_file:
        return read_token(token_file)
    return new_token() if token_required(host) else None


def announcement(
    url: str, port: int, host: str, token: str | None, token_file: str
) -> tuple[list[str], str]:
    """Where the page is: lines for the log, and a line for the console's own output only (""
    for none). The token never goes to the log: /rosout is readable by every node on the
    domain, and ~/.ros/log keeps it. A generated token is printed on the output of the process
    (the terminal of whoever started it), nowhere else; a token from a file is already known to
    whoever wrote the file. `url` is the server's, with its token."""
    base = url.split("?", 1)[0]
    if token is None:
        return [f"console at {base}"], ""
    printed = ""
    if token_file:
        lines = [f"console at {base}?token=<the first line of {token_file}>"]
    else:
        lines = [f"console at {base}?token=<generated: printed on the terminal that started it>"]
        printed = f"console address with its generated token: {url}"
    if host in ("0.0.0.0", "::"):
        lines.append(
            f"from another machine: http://<this machine's address>:{port}/?token=<the token>"
        )
    return lines, printed


def token_matches(expected: str, given: str | None) -> bool:
    return given is not None and hmac.compare_digest(expected.encode(), given.encode())


def bearer(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, else None."""
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    return value.strip() if scheme.lower() == "bearer" else None


def host_of(host_header: str) -> str:
    """`127.0.0.1:8088` -> `127.0.0.1`, `[::1]:8088` -> `::1`, `localhost` -> `localhost`."""
    host_header = host_header.strip()
    if host_header.startswith("["):
        return host_header[1 : host_header.find("]")] if "]" in host_header else host_header
    return host_header.rsplit(":", 1)[0] if host_header.count(":") == 1 else host_header


def loopback_host_header(host_header: str | None) -> bool:
    return bool(host_header) and is_loopback(host_of(host_header))


def cross_site(origin: str | None, fetch_site: str | None, host_header: str | None) -> str | None:
    """Why a control request does not come from the console's own page, or None if it does.

    A request without Origin and Sec-Fetch-Site (curl, a script) is not a browser acting for
    another site, so it passes; the token (where required) still applies.
    """
    if fetch_site and fetch_site.lower() == "cross-site":
        return "cross-site request (Sec-Fetch-Site: cross-site)"
    if origin is None:
        return None
    parts = urlsplit(origin)
    if origin == "null" or parts.scheme not in ("http", "https"):
        return f"cross-site request (Origin {origin})"
    if not host_header or parts.netloc.lower() != host_header.strip().lower():
        return f"cross-site request (Origin {origin} is not this console)"
    return None
