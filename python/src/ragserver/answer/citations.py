"""Which numbered references an answer cites: [1], [2][3] and [1, 2] all count; numbers the prompt never
gave (a model's invention) do not."""

from __future__ import annotations

import re

CITATION = re.compile(r"\[(\d+(?:\s*[,;]\s*\d+)*)\]")


def cited_numbers(answer: str, count: int) -> list[int]:
    """The reference numbers 1..count cited in `answer`, each once, in order of first citation."""
    cited: list[int] = []
    for match in CITATION.finditer(answer):
        for part in re.split(r"[,;]", match.group(1)):
            number = int(part)
            if 1 <= number <= count and number not in cited:
                cited.append(number)
    return cited
