"""Configured secrets never reach a log line, whoever writes it.

Our own messages already leave keys out, but other writers cannot be trusted to: uvicorn's
access log prints the full request line, so a client that puts the API key in a query string
(`?key=...`, which the server refuses) would have it written to the log. This filter sits on the
log handlers while the server runs and replaces every configured secret with `***` in the
message and in its arguments (uvicorn's access formatter reads the arguments one by one).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from urllib.parse import urlsplit

from ragserver.config import Settings

MASK = "***"
MIN_SECRET_CHARS = 4  # shorter values would mask ordinary words


def configured_secrets(settings: Settings) -> list[str]:
    """The API key, the Supabase service key, the DATABASE_URL and the password inside it."""
    values = [settings.ragserver_api_key, settings.supabase_service_key, settings.database_url]
    with contextlib.suppress(ValueError):
        values.append(urlsplit(settings.database_url).password or "")
    # longest first, so a DSN is masked whole before its password is
    return sorted({v for v in values if len(v) >= MIN_SECRET_CHARS}, key=len, reverse=True)


class SecretFilter(logging.Filter):
    """Masks the secrets in a record's message and string arguments; never drops a record."""

    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self.secrets = secrets

    def _mask(self, value: object) -> object:
        if isinstance(value, str):
            for secret in self.secrets:
                value = value.replace(secret, MASK)
        return value

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self._mask(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(self._mask(arg) for arg in record.args)
        return True


@contextlib.contextmanager
def secrets_masked_in_logs(settings: Settings) -> Iterator[None]:
    """While open, every handler of the root and uvicorn loggers masks the configured secrets."""
    secrets = configured_secrets(settings)
    if not secrets:
        yield
        return
    secret_filter = SecretFilter(secrets)
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
