"""Keeping secrets out of everything the engine shows: the one masker.

- :class:`Redactor` masks known secret values (inventory secrets, secret
  inputs) inside any string or structure, and passwords written inside
  connection strings even when nobody declared them.
- :func:`mask_dsn` shows one connection string with its password masked.
- :func:`sanitize` cleans a server's or a tool's message about a DSN: the DSN
  masked, every spelling of its password (raw, URL-decoded, unquoted) and
  ``PGPASSWORD`` removed.

Where two rules disagree the stricter wins: masking too much (a host) is
harmless, masking too little leaks.
"""
from __future__ import annotations

import base64
import html
import json
import os
import re
from typing import Any, Iterable
from urllib.parse import quote, quote_plus, unquote

__all__ = ["MASK", "Redactor", "mask_dsn", "mask_url", "secret_forms", "mask_text", "sanitize", "dsn_passwords"]

MASK = "***"

# --------------------------------------------------------------------------
# The patterns: a password in a URL's user info, in a URL's query, as key=value
# --------------------------------------------------------------------------

# The password runs to the *last* '@': a literal '@' in a password is common.
# In one DSN the password may hold anything; inside free text it ends at whitespace.
_URL_PASSWORD = re.compile(
    r"^(?P<head>[a-z][a-z0-9+.-]*://[^:@/?#]*):(?P<password>.*)@(?P<tail>[^@]*)$",
    re.IGNORECASE | re.DOTALL)
_URL_PASSWORD_IN_TEXT = re.compile(r"(?P<head>://[^\s:@/?#]*):(?P<password>\S*)@")
_URL_QUERY_PASSWORD = re.compile(r"(?P<key>[?&]password=)(?P<password>[^&#]*)", re.IGNORECASE)
# A quoted value runs to its closing quote (backslash escapes included); anything
# else, an unterminated quote too, runs to the next whitespace.
_KV_PASSWORD = re.compile(
    r"(?P<key>\bpassword\s*=\s*)(?P<password>'(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)
_POSTGRES_URL = re.compile(r"^postgres(?:ql)?://", re.IGNORECASE)


def mask_text(text: str) -> str:
    """``text`` with every password written in a URL or as ``password=...`` masked."""
    if "://" in text:
        text = _URL_PASSWORD_IN_TEXT.sub(rf"\g<head>:{MASK}@", text)
    if "=" in text:
        text = _KV_PASSWORD.sub(rf"\g<key>{MASK}", text)
    return text


# --------------------------------------------------------------------------
# Connection strings
# --------------------------------------------------------------------------

def _is_url(dsn: str) -> bool:
    return bool(_POSTGRES_URL.match(dsn))


def mask_dsn(dsn: str) -> str:
    """``dsn`` with its password replaced by ``***`` (URL or key=value form)."""
    if not isinstance(dsn, str):
        return MASK
    if _is_url(dsn):
        masked = _URL_PASSWORD.sub(rf"\g<head>:{MASK}@\g<tail>", dsn)
        return _URL_QUERY_PASSWORD.sub(rf"\g<key>{MASK}", masked)
    return _KV_PASSWORD.sub(rf"\g<key>{MASK}", dsn)


def mask_url(url: str) -> str:
    """Any URL with the password of its user info masked (up to the last '@')."""
    return _URL_PASSWORD.sub(rf"\g<head>:{MASK}@\g<tail>", url) if isinstance(url, str) else MASK


def dsn_passwords(dsn: str) -> set[str]:
    """Every spelling of the password(s) that ``dsn`` carries: raw, decoded, unquoted."""
    found: set[str] = set()
    if _is_url(dsn):
        match = _URL_PASSWORD.match(dsn)
        if match:
            found.add(match["password"])
        found.update(m["password"] for m in _URL_QUERY_PASSWORD.finditer(dsn))
        found |= {unquote(p) for p in found}
    else:
        for m in _KV_PASSWORD.finditer(dsn):
            value = m["password"]
            found.add(value)
            if value.startswith("'") and value.endswith("'") and len(value) > 1:
                found.add(re.sub(r"\\(.)", r"\1", value[1:-1]))
    return {p for p in found if p}


def sanitize(text: Any, dsn: str = "") -> str:
    """``text`` (a server or tool message) with the DSN masked and any password removed."""
    text = str(text)
    secrets: set[str] = set()
    if dsn:
        text = text.replace(dsn, mask_dsn(dsn))
        secrets = dsn_passwords(dsn)
    if os.environ.get("PGPASSWORD"):
        secrets.add(os.environ["PGPASSWORD"])
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return mask_text(text)


# --------------------------------------------------------------------------
# Known secrets
# --------------------------------------------------------------------------

def secret_forms(secret: str) -> set[str]:
    """Every common spelling of ``secret`` a command or a filter may print: raw, URL-quoted,
    JSON- and HTML-escaped, hex, base64 at each of the three alignments it can have inside a
    longer encoded text (standard and URL-safe alphabets), and, for a secret holding bytes
    that are not UTF-8, the text a reader decoding with replacement characters sees."""
    raw = secret.encode("utf-8", "surrogateescape")
    texts = {secret, raw.decode("utf-8", "replace"), raw.decode("utf-8", "backslashreplace")}
    forms = set()
    for text in texts:
        data = text.encode("utf-8", "surrogateescape")  # quote() refuses lone surrogates
        forms |= {text, quote(data, safe=""), quote(data), quote_plus(data), html.escape(text),
                  json.dumps(text)[1:-1], json.dumps(text, ensure_ascii=False)[1:-1]}
        if "\ufffd" in text:  # what surrounds an undecodable byte is the secret too
            forms |= {part for part in text.split("\ufffd") if len(part) >= 4}
    forms |= {raw.hex(), raw.hex().upper()} | _base64_forms(raw)
    return {form for form in forms if len(form) >= 4}


def _base64_forms(raw: bytes) -> set[str]:
    """The base64 characters that depend on ``raw`` alone, at byte offsets 0, 1 and 2."""
    found = set()
    for pad in range(3):
        start, end = -(-8 * pad // 6), (8 * pad + 8 * len(raw)) // 6
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            found.add(encode(b"\0" * pad + raw).decode("ascii")[start:end])
    return found


class Redactor:
    """Replaces secret values with ``***`` inside strings and nested structures.

    Each known secret is masked in every spelling :func:`secret_forms` lists. Besides
    the known secrets (inventory secrets, secret inputs), passwords
    written inside connection strings (``postgresql://user:PASS@host``,
    ``password=PASS``) are always masked. Secrets shorter than 4 characters
    are not masked as substrings (they would mask ordinary words), only where
    a whole value equals them.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: list[str] = []
        self._short: set[str] = set()
        self._pattern: re.Pattern | None = None
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        for secret in secrets:
            secret = str(secret)
            if not secret:
                continue
            if len(secret) < 4:
                self._short.add(secret)
                continue
            for form in secret_forms(secret):
                if form not in self._secrets:
                    self._secrets.append(form)
        self._secrets.sort(key=len, reverse=True)
        self._pattern = (re.compile("|".join(re.escape(s) for s in self._secrets))
                         if self._secrets else None)

    def __bool__(self) -> bool:
        return bool(self._secrets or self._short)

    def mask(self, value: Any) -> Any:
        """A copy of ``value`` with every secret replaced by ``***``."""
        return self._mask(value)

    def _mask(self, value: Any) -> Any:
        if isinstance(value, str):
            if value in self._short:
                return MASK
            if "://" in value:
                self._learn_dsn_password(value)
            if self._pattern is not None:
                value = self._pattern.sub(MASK, value)
            return mask_text(value)
        if isinstance(value, dict):
            return {self._mask(k) if isinstance(k, str) else k: self._mask(v)
                    for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self._mask(v) for v in value]
        return value

    def _learn_dsn_password(self, value: str) -> None:
        """A whole value that is a connection URL (an argument) holds a password that may
        contain '@' or spaces, which free-text matching cannot delimit: learn it, so later
        messages quoting the URL (or the password alone) are masked too."""
        if len(value) > 4096 or "\n" in value or not _URL_PASSWORD.match(value):
            return
        learned = [p for p in dsn_passwords(value) if p not in self._secrets and p != MASK]
        if learned:
            self.add(learned)
