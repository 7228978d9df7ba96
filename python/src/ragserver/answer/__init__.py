"""Answers for people who ask rather than search: retrieval, a grounded prompt, an OpenAI-compatible LLM.

llm (the chat client), prompt (numbered sources), citations and refusal (reading the answer), service
(the flow), results (what it answers). The faces (api/ask.py, `ragserver ask`) call AnswerService,
and require_llm to refuse early.
"""

from ragserver.answer.llm import ChatClient
from ragserver.answer.results import EVENT_NAMES, AskEvent, AskResponse
from ragserver.answer.service import AnswerService, AnswerStream, Question, chat_client, require_llm

__all__ = [
    "EVENT_NAMES",
    "AnswerService",
    "AnswerStream",
    "AskEvent",
    "AskResponse",
    "ChatClient",
    "Question",
    "chat_client",
    "require_llm",
]
