"""Reference solutions for lesson 02 (peek only after trying)."""

from __future__ import annotations

MAX_INPUT_CHARS_PER_WORD = 100


def wordpiece(word: str, vocab: dict[str, int]) -> list[str]:
    """The pieces of one normalized word: 'unaffable' -> ['una', '##ffa', '##ble']."""
    if len(word) > MAX_INPUT_CHARS_PER_WORD:
        return ["[UNK]"]
    pieces = []
    start = 0
    while start < len(word):
        # Greedy longest-match-first: try word[start:end] for end from the longest down.
        for end in range(len(word), start, -1):
            piece = word[start:end] if start == 0 else "##" + word[start:end]
            if piece in vocab:
                pieces.append(piece)
                start = end
                break
        else:  # no piece matched at this position: the whole word is unknown
            return ["[UNK]"]
    return pieces
