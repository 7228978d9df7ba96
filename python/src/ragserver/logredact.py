"""Configured secrets never reach a log line, whoever writes it.

Our own messages already leave keys out, but other writers cannot be trusted to: uvicorn's
access log prints the full request line, so a client that puts the API key in a query string
(`?key=...`, which the server refuses) would have it written to the log. This filter sits on the
log handlers while the server runs and replaces every configured secret with `***` in the
message and in its arguments (uvicorn's access formatter reads the arguments one by one).
Besides the configured ones, secrets that arrive at run time (a crawl's request header values)
are registered with `mask_in_logs` and masked from then on, for the life of the process.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Iterator
from urllib.parse import parse_qsl, urlsplit

from ragserver.config import Settings

MASK = "***"
MIN_SECRET_CHARS = 4  # shorter values would mask ordinary words
_registered: set[str] = set()  # run-time secrets (mask_in_logs), kept for the life of the process


def mask_in_logs(values: Iterable[str]) -> None:
    """Mask these values in every log line from now on (those too short to be secrets excepted)."""
    _registered.update(v for v in values if len(v) >= MIN_SECRET_CHARS)


def configured_secrets(settings: Settings) -> list[str]:
    """The API key, the Supabase service key, the remote model servers' keys, the DATABASE_URL, REDIS_URL,
    the LLM's key, and the passwords and query values of all those URLs (url_secrets)."""
    values = [
        settings.ragserver_api_key,
        settings.supabase_service_key,
        settings.database_url,
        settings.embedding_api_key,
        settings.rerank_api_key,
        settings.redis_url,
        settings.llm_api_key,
    ]
    urls = (settings.database_url, settings.embedding_url, settings.rerank_url, settings.redis_url, settings.llm_url)
    for url in urls:
        values += url_secrets(url)
    # longest first, so a DSN is masked whole before its password is
    return sorted({v for v in values if len(v) >= MIN_SECRET_CHARS}, key=len, reverse=True)


def url_secrets(url: str) -> list[str]:
    """What in a URL may be a secret: its password and its query values (a gateway's `?key=`), those too
    short to be secrets excepted; none for a URL that does not parse."""
    with contextlib.suppress(ValueError):
        parts = urlsplit(url)
        values = [parts.password or "", *(value for _, value in parse_qsl(parts.query))]
        return [value for value in values if len(value) >= MIN_SECRET_CHARS]
    return []


class SecretFilter(logging.Filter):
    """Masks the secrets in a record's message and string arguments; never drops a record."""

    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self.secrets = secrets

    @staticmethod
    def _mask(value: object, secrets: list[str]) -> object:
        """A string with the secrets masked; any other value whose text holds one (a dict of headers,
        an exception) as that masked text; else the value itself, so %d and %r keep working."""
        text = value if isinstance(value, str) else str(value)
        if not any(secret in text for secret in secrets):
            return value
        for secret in secrets:
            text = text.replace(secret, MASK)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        secrets = sorted({*self.secrets, *_registered}, key=len, reverse=True)
        record.msg = self._mask(record.msg, secrets)
        if isinstance(record.args, tuple):
            record.args = tuple(self._mask(arg, secrets) for arg in record.args)
        elif isinstance(record.args, dict):
            record.args = {key: self._mask(arg, secrets) for key, arg in record.args.items()}
        if record.exc_info and not record.exc_text:  # the formatter uses exc_text when it is set
            record.exc_text = str(self._mask(logging.Formatter().formatException(record.exc_info), secrets))
        return True


@contextlib.contextmanager
def secrets_masked_in_logs(settings: Settings) -> Iterator[None]:
    """While open, every handler of the root and uvicorn loggers masks the configured and registered secrets."""
    secret_filter = SecretFilter(configured_secrets(settings))
    handlers = {
        h for name in ("", "uvicorn", "uvicorn.error", "uvicorn.access") for h in logging.getLogger(name).handlers
    }
    for handler in handlers:
        handler.addFilter(secret_filter)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(secret_filter)
