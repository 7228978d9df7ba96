"""A reasoning model's thinking kept out of the answer.

Reasoning models (Qwen3, DeepSeek-R1) served by some OpenAI-compatible servers write their thinking into
the answer's content between <think> and </think>. It is not the answer: shown, it would bury it, and
its [n] would count as citations. ThinkingFilter drops it from a stream whose pieces may cut a tag
anywhere, holding back only a tail that could still be the start of one.
"""

from __future__ import annotations

OPEN, CLOSE = "<think>", "</think>"


def _tag_start_at_end(text: str, tag: str) -> int:
    """How many characters at the end of `text` could be the first characters of `tag`."""
    for size in range(min(len(tag) - 1, len(text)), 0, -1):
        if tag.startswith(text[-size:]):
            return size
    return 0


class ThinkingFilter:
    """Feed it the pieces of an answer; it returns the text outside <think>...</think> so far."""

    def __init__(self) -> None:
        self._held = ""
        self._thinking = False

    def feed(self, piece: str) -> str:
        text, self._held = self._held + piece, ""
        shown: list[str] = []
        while text:
            tag = CLOSE if self._thinking else OPEN
            at = text.find(tag)
            if at < 0:
                keep = _tag_start_at_end(text, tag)
                if not self._thinking:
                    shown.append(text[: len(text) - keep])
                self._held = text[len(text) - keep :]
                break
            if not self._thinking:
                shown.append(text[:at])
            text = text[at + len(tag) :]
            self._thinking = not self._thinking
        return "".join(shown)

    def finish(self) -> str:
        """The tail held back when the answer ends (it was no tag); nothing of an unclosed thought."""
        held, self._held = self._held, ""
        return "" if self._thinking else held


def without_thinking(answer: str) -> str:
    """A whole answer without its thinking."""
    thinking = ThinkingFilter()
    return (thinking.feed(answer) + thinking.finish()).strip()
