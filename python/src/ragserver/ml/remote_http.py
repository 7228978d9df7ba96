"""One remote model server (EMBEDDING_URL or RERANK_URL): pooled HTTP, retries with backoff, errors
translated at this boundary.

Blocking on purpose: the remote models sit behind the same blocking contracts as the local ones
(ml.contracts), so the batching worker calls them from its inference thread exactly as it calls a
local model. What a failure means decides what happens next:

- no answer, a timeout, a 429 or a 5xx: retried REMOTE_RETRIES times with doubling pauses, then a
  RemoteModelError (searches fall back, an ingest run fails); a `quick` call (a search's query embed or
  rerank) is tried once with REMOTE_QUERY_TIMEOUT_S as its timeout, so a server that hangs costs a
  search seconds before it falls back to full text, and holds the model's inference thread no longer;
- a 413: BatchTooLarge at once, so the caller halves the batch;
- any other 4xx (a wrong key, an unknown model): a RemoteModelError at once, no retry helps;
- a body that is not JSON: a RemoteModelError saying the server answered garbage.

The last failure is kept (and cleared by the next success) so /health can say the backend is failing
and why; `url` is the base URL without credentials or query string, safe to show, and a quoted answer
body has the key and the URL's password and query values masked (a server may echo what it was sent;
/health is not a log line). The URL's query string (a gateway's api-version) goes with every request.
For REMOTE_COOLDOWN_S after such a failure requests fail at once, without asking the server: the
one inference thread of a model must not spend every search's time on retries against a server
known to be down. A quick call's failure cools down quick calls only: a server too slow for a
search may still be fine for an ingest.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from ragserver.domain import SECRET_MASK
from ragserver.errors import RemoteModelError
from ragserver.logredact import url_secrets

if TYPE_CHECKING:  # imported where used: check-ml runs in the bootstrap image, which has no httpx
    import httpx

log = logging.getLogger(__name__)

Item = TypeVar("Item")
Result = TypeVar("Result")

BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 8.0
BODY_EXCERPT_CHARS = 200
MAX_CONNECTIONS = 8


class BatchTooLarge(RemoteModelError):
    """The server refused the request's size (HTTP 413); a smaller batch may pass."""


def public_url(url: str) -> str:
    """The URL without user:password or query string (either may hold a secret), for /health and messages."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))


class RemoteServer:
    """POSTs JSON to one model server; `role` ("embedding" | "rerank") names it in messages."""

    def __init__(
        self,
        role: str,
        base_url: str,
        api_key: str,
        *,
        timeout_s: float,
        retries: int,
        cooldown_s: float = 0.0,
        query_timeout_s: float | None = None,
    ) -> None:
        self.role = role
        self.url = public_url(base_url)
        self.patient = CallBudget(timeout_s, retries, "REMOTE_TIMEOUT_S")
        self.quick = CallBudget(query_timeout_s or timeout_s, 0, "REMOTE_QUERY_TIMEOUT_S")
        self.cooldown_s = cooldown_s
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        parts = urlsplit(base_url)
        auth = (parts.username or "", parts.password or "") if parts.username else None
        self._secrets = [secret for secret in (api_key, *url_secrets(base_url)) if secret]
        import httpx

        self._client = httpx.Client(
            base_url=self.url + "/",
            headers=headers,
            auth=auth,
            params=httpx.QueryParams(parts.query),  # e.g. a gateway's api-version, sent with every request
            timeout=timeout_s,
            limits=httpx.Limits(max_connections=MAX_CONNECTIONS),
        )
        self._lock = threading.Lock()
        self._failures: dict[bool, tuple[str, float]] = {}  # quick? -> (why the last call failed, when)

    @property
    def failure(self) -> str | None:
        """Why the last request failed (after its retries); None once one succeeds again."""
        with self._lock:
            latest = max(self._failures.values(), key=lambda failure: failure[1], default=None)
        return latest[0] if latest else None

    def close(self) -> None:
        self._client.close()

    def post(self, path: str, body: dict[str, Any], *, quick: bool = False) -> Any:
        """The decoded JSON answer to POST `path`; RemoteModelError (or BatchTooLarge) when it fails.

        `quick`: a search waits for it, so one try within REMOTE_QUERY_TIMEOUT_S.
        """
        cooling = self._cooling(quick)
        if cooling is not None:
            raise RemoteModelError(f"{cooling} (not asked again for REMOTE_COOLDOWN_S={self.cooldown_s:g} s)")
        try:
            answer = self._post_with_retries(path, body, self.quick if quick else self.patient)
        except RemoteModelError as exc:
            if not isinstance(exc, BatchTooLarge):
                self._record(exc.message, quick=quick)
            raise
        self._record(None)
        return answer

    def garbage(self, what: str) -> RemoteModelError:
        """The error for an answer of the wrong shape (the caller checked it), recorded for /health; it
        cools down every call (a server that answers garbage is broken, not slow)."""
        error = RemoteModelError(f"the {self.role} server at {self.url} answered garbage: {what}")
        self._record(error.message)
        return error

    def _cooling(self, quick: bool) -> str | None:
        """The failure that keeps this call from asking the server now: a quick call heeds every
        recent failure, a patient one only those of patient calls."""
        now = time.monotonic()
        with self._lock:
            kinds = (True, False) if quick else (False,)
            recent = [self._failures[kind] for kind in kinds if kind in self._failures]
        cooling = [why for why, when in recent if now - when < self.cooldown_s]
        return cooling[0] if cooling else None

    def _record(self, failure: str | None, *, quick: bool = False) -> None:
        """Keep a call's failure; a success (failure None) of any call clears them all: the server answers."""
        with self._lock:
            if failure is None:
                self._failures.clear()
            else:
                self._failures[quick] = (failure, time.monotonic())

    def _post_with_retries(self, path: str, body: dict[str, Any], budget: CallBudget) -> Any:
        pause = BACKOFF_FIRST_S
        for attempt in range(budget.retries + 1):
            failure = self._attempt(path, body, budget)
            if not isinstance(failure, str):
                return failure.value
            if attempt < budget.retries:
                log.warning("%s server %s: %s; retrying in %.1f s", self.role, self.url, failure, pause)
                time.sleep(pause)
                pause = min(pause * 2, BACKOFF_MAX_S)
        attempts = budget.retries + 1
        raise RemoteModelError(
            f"the {self.role} server at {self.url} failed: {failure} ({attempts} attempt{'s' * (attempts > 1)})"
        )

    def _attempt(self, path: str, body: dict[str, Any], budget: CallBudget) -> _Answer | str:
        """One request: the answer, or why it is worth retrying; raises when retrying cannot help."""
        import httpx

        try:
            response = self._client.post(path.lstrip("/"), json=body, timeout=budget.timeout_s)
        except httpx.TimeoutException:
            return f"no answer within {budget.timeout_s:g} s ({budget.setting})"
        except httpx.TransportError as exc:
            return f"unreachable: {type(exc).__name__}: {exc}"
        status = response.status_code
        if status == 429 or status >= 500:
            return f"HTTP {status}: {self._excerpt(response)}"
        if status == 413:
            raise BatchTooLarge(f"the {self.role} server at {self.url} refused a batch as too large (HTTP 413)")
        if status >= 400:
            raise RemoteModelError(
                f"the {self.role} server at {self.url} answered HTTP {status}: {self._excerpt(response)}"
            )
        try:
            return _Answer(response.json())
        except ValueError:
            raise self.garbage(f"not JSON: {self._excerpt(response)!r}") from None

    def _excerpt(self, response: httpx.Response) -> str:
        """The start of an answer's body, to quote in an error, without the key or the URL's password."""
        text = response.text[:BODY_EXCERPT_CHARS]
        for secret in self._secrets:
            text = text.replace(secret, SECRET_MASK)
        return text.strip() or "(empty body)"


@dataclass(frozen=True)
class CallBudget:
    """How long one kind of call may take: each try's timeout (named by `setting` in messages) and retries."""

    timeout_s: float
    retries: int
    setting: str


class _Answer:
    """A decoded body (distinguishes a JSON string answer from a failure text)."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


def finite_float(value: object) -> float | None:
    """`value` as a finite float, or None when it is not a number (NaN and infinities included)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if number - number == 0.0 else None


def in_batches(run: Callable[[list[Item]], list[Result]], items: list[Item], size: int) -> list[Result]:
    """`run` over `items` in requests of at most `size` items, each halved for as long as the server
    answers 413 (a single item it refuses is an error); results in input order."""
    results: list[Result] = []
    for start in range(0, len(items), size):
        results += _halving(run, items[start : start + size])
    return results


def _halving(run: Callable[[list[Item]], list[Result]], items: list[Item]) -> list[Result]:
    try:
        return run(items)
    except BatchTooLarge:
        if len(items) == 1:
            raise
        log.info("a batch of %d was too large for the server; halving it", len(items))
        half = len(items) // 2
        return _halving(run, items[:half]) + _halving(run, items[half:])
