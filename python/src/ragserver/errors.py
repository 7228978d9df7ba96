"""The error tree of ragserver, in one place.

Foreign errors (psycopg, httpx, torch, pypdf) are translated at the boundary with
`raise X(...) from exc`; one FastAPI handler renders any RagServerError as JSON with its
`status_code`, so a bad input never becomes a 500 with a traceback.

    RagServerError                 500  base
      ConfigError                  500  a setting has a bad value
      InputError                   400  the request is wrong (bad field, unsupported file type, ...)
        PayloadTooLarge            413  upload above MAX_UPLOAD_MB
        UnsupportedMediaType       415  a file type we cannot parse
        TargetRefused              400  a crawl target refused by the SSRF guard or robots
      NotFound                     404  an id that does not exist
      Unauthorized                 401  missing or wrong API key
      Busy                         429  a queue is full; retry later
      Unavailable                  503  a dependency (database, ML env) is not ready
      StoreError                   500  the database failed in an unexpected way
        SchemaMismatch             503  the database's schema is not one this release can run on
                                        (a released migration edited, or a newer release's schema):
                                        fatal at start-up, never retried
      MLError                      500  inference failed
      RemoteModelError             502  a remote model server (EMBEDDING_URL, RERANK_URL) failed or answered
                                        garbage, after its retries: searches fall back, an ingest run fails
      NotConfigured                409  a feature whose settings are not set (/api/rag/ask without LLM_URL, LLM_MODEL)
      LLMError                     502  the LLM server (LLM_URL) is down or answered an error or garbage
        LLMTimeout                 504  the LLM server stayed silent longer than LLM_TIMEOUT_S
      CrawlError                   502  fetching a page failed
"""

from __future__ import annotations


class RagServerError(Exception):
    """Base of every error ragserver raises on purpose."""

    status_code = 500
    code = "internal_error"

    def __init__(self, message: str, *, details: dict[str, object] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}

    def to_json(self) -> dict[str, object]:
        """The JSON body the API returns for this error."""
        body: dict[str, object] = {"success": False, "error": self.code, "message": self.message}
        if self.details:
            body["details"] = self.details
        return body


class ConfigError(RagServerError):
    code = "config_error"


class InputError(RagServerError):
    status_code = 400
    code = "bad_request"


class PayloadTooLarge(InputError):
    status_code = 413
    code = "payload_too_large"


class UnsupportedMediaType(InputError):
    status_code = 415
    code = "unsupported_media_type"


class TargetRefused(InputError):
    status_code = 400
    code = "target_refused"


class NotFound(RagServerError):
    status_code = 404
    code = "not_found"


class Unauthorized(RagServerError):
    status_code = 401
    code = "unauthorized"


class Busy(RagServerError):
    status_code = 429
    code = "busy"


class Unavailable(RagServerError):
    status_code = 503
    code = "unavailable"


class StoreError(RagServerError):
    code = "store_error"


class SchemaMismatch(StoreError):
    status_code = 503
    code = "schema_mismatch"


class MLError(RagServerError):
    code = "ml_error"


class RemoteModelError(RagServerError):
    status_code = 502
    code = "remote_model_error"


class NotConfigured(RagServerError):
    status_code = 409
    code = "not_configured"


class LLMError(RagServerError):
    status_code = 502
    code = "llm_error"


class LLMTimeout(LLMError):
    status_code = 504
    code = "llm_timeout"


class CrawlError(RagServerError):
    status_code = 502
    code = "crawl_error"
