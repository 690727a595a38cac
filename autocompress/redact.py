"""Secrets in storage URLs: shown masked, stored without the password.

A study on PostgreSQL is named by a URL that may carry a password
(``postgresql://user:PASSWORD@host/db``). The tool prints it as ``postgresql://user:***@host/db``
and records it in the run directory without the password at all; whoever connects later gives
the password the way PostgreSQL users expect (``PGPASSWORD``, ``~/.pgpass``, a libpq service
file) or names the whole URL in the ``AUTOCOMPRESS_STORAGE`` environment variable.
"""

from __future__ import annotations

import re
from urllib.parse import SplitResult, unquote, urlsplit, urlunsplit

MASK = "***"


def _split(url: str) -> SplitResult | None:
    if "://" not in url:
        return None  # journal:PATH, or not a URL at all
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        return None
    return parts


def password_of(url: str) -> str | None:
    """The password a URL carries, or None."""
    parts = _split(url)
    return parts.password if parts is not None else None


def _with_password(url: str, password: str | None) -> str:
    parts = _split(url)
    if parts is None or parts.password is None:
        return url
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    auth = user if password is None else f"{user}:{password}"
    return urlunsplit(parts._replace(netloc=f"{auth}@{host}"))


def mask_url(url: str) -> str:
    """``postgresql://user:***@host/db`` for printing; URLs without a password unchanged.

    Example::

        mask_url("postgresql://ann:s3cret@db:5432/studies")  # 'postgresql://ann:***@db:5432/studies'
    """
    return _with_password(url, MASK)


def strip_password(url: str) -> str:
    """The URL without its password, for files (``postgresql://user@host/db``)."""
    return _with_password(url, None)


def redact(text: str, url: str | None) -> str:
    """``text`` with ``url``'s password (anywhere in it, e.g. inside a driver's error) masked."""
    if not url:
        return text
    password = password_of(url)
    if password:
        text = text.replace(url, mask_url(url))
        for form in {password, unquote(password)}:
            text = text.replace(form, MASK)
    return text


_URL_PASSWORD = re.compile(r"(\b[a-zA-Z][\w+.-]*://[^\s:/@]*:)[^\s@/]+@")


def mask_urls_in(text: str) -> str:
    """Any ``scheme://user:password@`` in free text (a driver's message) with the password
    masked, for errors whose URL is not known."""
    return _URL_PASSWORD.sub(rf"\1{MASK}@", text)
