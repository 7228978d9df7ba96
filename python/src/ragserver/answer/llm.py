"""The chat client: one OpenAI-compatible `/chat/completions` endpoint (Ollama, vLLM, LM Studio, OpenAI) over httpx.

Every call has a budget: connecting at most CONNECT_TIMEOUT_S, and the server may stay silent for at most
LLM_TIMEOUT_S between two pieces of its answer. So an LLM that is down answers LLMError (502) and one that
hangs LLMTimeout (504), never a request that waits forever. A stream is opened (status and headers read)
before it is handed out, so a server that refuses the request still fails as a plain 502/504 before any
event has gone to the caller. A stream that ends without `[DONE]` or a finish reason was cut off: an
LLMError, not an answer that looks whole. LLM_API_KEY goes out as a Bearer header and is masked out of
every message made here (an error body may echo what the server received), and so are LLM_URL's password
and query values; messages name LLM_URL without them. Its query string (a gateway's api-version) goes with
every request.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from ragserver.config import Settings
from ragserver.domain import SECRET_MASK
from ragserver.errors import ConfigError, LLMError, LLMTimeout
from ragserver.logredact import url_secrets
from ragserver.ml.remote_http import public_url

CONNECT_TIMEOUT_S = 10.0
ERROR_BODY_CHARS = 300
Message = dict[str, str]


@dataclass
class Completion:
    """What the LLM answered (whole, or gathered while streaming) and what it says of the answer."""

    text: str = ""
    model: str = ""
    finish_reason: str | None = None
    usage: dict[str, int] = field(default_factory=dict)

    def take(self, body: dict[str, Any]) -> str:
        """Read one completion body or stream chunk into self; returns its new text."""
        self.model = str(body.get("model") or self.model)
        usage = body.get("usage")
        if isinstance(usage, dict):
            self.usage = {key: value for key, value in usage.items() if isinstance(value, int)}
        choices = body.get("choices")
        if not isinstance(choices, list):
            raise LLMError("the LLM answered without 'choices' (is LLM_URL an OpenAI-compatible /v1 base URL?)")
        if not choices:
            return ""  # a streamed usage-only chunk
        choice = choices[0] if isinstance(choices[0], dict) else {}
        part = choice.get("delta", choice.get("message"))  # a stream's last chunk may have an empty delta
        text = (part.get("content") or "") if isinstance(part, dict) else None
        if not isinstance(text, str):
            raise LLMError("the LLM answered a choice without a message or text content")
        self.finish_reason = choice.get("finish_reason") or self.finish_reason
        self.text += text
        return text


class ChatStream:
    """A streamed completion whose status line has arrived: iterate `pieces()`, then read `completion`."""

    def __init__(self, client: ChatClient, response: httpx.Response) -> None:
        self._client = client
        self._response = response
        self.completion = Completion(model=client.model)

    async def pieces(self) -> AsyncIterator[str]:
        """The answer's text as it arrives (OpenAI's `data: {...}` lines up to `data: [DONE]`); a server that
        answers a whole JSON completion instead (it does not stream) gives it as one piece."""
        try:
            if self._response.headers.get("content-type", "").startswith("application/json"):
                text = self.completion.take(self._client.parse((await self._response.aread()).decode()))
                if text:
                    yield text
                return
            async for line in self._response.aiter_lines():
                if not line.startswith("data:"):
                    continue  # blank separators, comments, event names
                payload = line[len("data:") :].strip()
                if payload == "[DONE]":
                    return
                text = self.completion.take(self._client.parse(payload))
                if text:
                    yield text
            if self.completion.finish_reason is None:
                raise LLMError(f"the LLM at {self._client.shown_url} ended its stream before the answer was complete")
        except httpx.HTTPError as exc:
            raise self._client.translate(exc) from exc

    async def aclose(self) -> None:
        await self._response.aclose()


def llm_configured(settings: Settings) -> bool:
    """Whether an LLM is configured: LLM_URL and LLM_MODEL both set."""
    return bool(settings.llm_url and settings.llm_model)


class ChatClient:
    """Asks the configured chat model; one pooled HTTP client for the life of the process."""

    def __init__(self, settings: Settings) -> None:
        if not settings.llm_url.startswith(("http://", "https://")):
            raise ConfigError(f"LLM_URL must be an http(s):// base URL (with /v1), got {settings.llm_url!r}")
        if settings.llm_timeout_s <= 0:
            raise ConfigError("LLM_TIMEOUT_S must be more than 0")
        self.settings = settings
        self.model = settings.llm_model
        parts = urlsplit(settings.llm_url)
        # httpx sends a user:password in the URL as basic auth; the query string goes with every request
        self.url = urlunsplit(parts._replace(path=parts.path.rstrip("/") + "/chat/completions", query=""))
        self.shown_url = public_url(self.url)
        self._secrets = [secret for secret in (settings.llm_api_key, *url_secrets(settings.llm_url)) if secret]
        headers = {"Authorization": f"Bearer {settings.llm_api_key}"} if settings.llm_api_key else {}
        timeout = httpx.Timeout(settings.llm_timeout_s, connect=min(CONNECT_TIMEOUT_S, settings.llm_timeout_s))
        self._http = httpx.AsyncClient(headers=headers, timeout=timeout, params=httpx.QueryParams(parts.query))

    @classmethod
    def from_settings(cls, settings: Settings) -> ChatClient | None:
        """The client LLM_URL and LLM_MODEL describe; None when either is unset (asking is off)."""
        return cls(settings) if llm_configured(settings) else None

    async def complete(self, messages: list[Message]) -> Completion:
        """The whole answer at once."""
        try:
            response = await self._http.post(self.url, json=self._body(messages, stream=False))
        except httpx.HTTPError as exc:
            raise self.translate(exc) from exc
        self._check_status(response.status_code, response.text)
        completion = Completion(model=self.model)
        completion.take(self.parse(response.text))
        return completion

    async def open_stream(self, messages: list[Message]) -> ChatStream:
        """A streamed answer, once the server has accepted the request (its errors raised here)."""
        request = self._http.build_request("POST", self.url, json=self._body(messages, stream=True))
        try:
            response = await self._http.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise self.translate(exc) from exc
        if response.status_code >= 400:
            try:
                body = (await response.aread()).decode(errors="replace")
            except httpx.HTTPError as exc:
                raise self.translate(exc) from exc
            finally:
                await response.aclose()
            self._check_status(response.status_code, body)
        return ChatStream(self, response)

    async def aclose(self) -> None:
        await self._http.aclose()

    def _body(self, messages: list[Message], *, stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "temperature": self.settings.llm_temperature,
            "stream": stream,
        }
        if self.settings.llm_max_tokens > 0:
            body["max_tokens"] = self.settings.llm_max_tokens
        return body

    def parse(self, payload: str) -> dict[str, Any]:
        """One JSON object of the LLM; anything else is an LLMError that quotes (masked) what came."""
        try:
            body = json.loads(payload)
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise LLMError(f"the LLM at {self.shown_url} answered something that is not JSON: {self._masked(payload)}")
        error = body.get("error")  # OpenAI's shape of a failure, also sent in the middle of a stream
        if error:
            message = error.get("message", error) if isinstance(error, dict) else error
            raise LLMError(f"the LLM at {self.shown_url} reported an error: {self._masked(str(message))}")
        return body

    def translate(self, exc: httpx.HTTPError) -> LLMError:
        """An httpx failure as our error: a timeout is a 504, anything else (refused, cut off, bad URL) a 502."""
        if isinstance(exc, httpx.TimeoutException):
            return LLMTimeout(
                f"the LLM at {self.shown_url} did not answer within LLM_TIMEOUT_S={self.settings.llm_timeout_s:g} s"
            )
        detail = self._masked(str(exc) or type(exc).__name__)
        if isinstance(exc, httpx.ConnectError):
            return LLMError(f"the LLM at {self.shown_url} could not be reached: {detail}")
        return LLMError(f"the LLM at {self.shown_url} failed: {detail}")

    def _check_status(self, status: int, body: str) -> None:
        if status < 400:
            return
        hint = " (check LLM_API_KEY)" if status in (401, 403) else " (check LLM_MODEL)" if status == 404 else ""
        raise LLMError(f"the LLM at {self.shown_url} answered HTTP {status}{hint}: {self._masked(body)}")

    def _masked(self, text: str) -> str:
        """At most ERROR_BODY_CHARS of a foreign text, on one line, without the API key or LLM_URL's secrets."""
        for secret in self._secrets:
            text = text.replace(secret, SECRET_MASK)
        return " ".join(text.split())[:ERROR_BODY_CHARS]
