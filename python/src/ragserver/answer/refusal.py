"""Telling the model's "the sources do not say" (NOT_IN_SOURCES, as the prompt asks) from an answer.

A streamed answer cannot be shown as it comes and checked afterwards, so RefusalGate holds back the
first characters only while they could still be the start of NOT_IN_SOURCES, then lets everything
through (an answer) or nothing (a refusal, which the service replaces with its own sentence).
"""

from __future__ import annotations

from ragserver.answer.prompt import NOT_IN_SOURCES

DECORATION = " \t\r\n*_`\"'"  # what a model may put around the marker (markdown emphasis, quotes)


def is_refusal(answer: str) -> bool:
    """True when a whole answer is the model saying the sources do not hold the answer."""
    return answer.lstrip(DECORATION).startswith(NOT_IN_SOURCES)


class RefusalGate:
    """Feed it the pieces of a streamed answer; it returns the text that may be shown so far."""

    def __init__(self) -> None:
        self._held = ""
        self._decided = False
        self.refused = False

    def feed(self, piece: str) -> str:
        if self._decided:
            return "" if self.refused else piece
        self._held += piece
        start = self._held.lstrip(DECORATION)
        if NOT_IN_SOURCES.startswith(start):
            return ""  # could still become the marker
        self._decided = True
        self.refused = is_refusal(self._held)
        return "" if self.refused else self._held

    def finish(self) -> str:
        """The text still held when the stream ends (a short answer that began like the marker)."""
        if self._decided:
            return ""
        self._decided = True
        self.refused = is_refusal(self._held)
        return "" if self.refused else self._held
