"""How errors quote what they were given: a bounded repr, whatever the value holds (a YAML file's
billion-laugh expansion, a 4 MiB wire field, an integer of a million digits)."""

from __future__ import annotations

import reprlib
from typing import Any


class _ShortRepr(reprlib.Repr):
    """reprlib's bounded repr (a few items a level, a few levels), with huge ints summarised, not converted."""

    def __init__(self) -> None:
        super().__init__()
        self.maxlevel, self.maxdict, self.maxlist, self.maxtuple, self.maxset = 3, 4, 6, 6, 6
        self.maxstring, self.maxlong, self.maxother = 60, 40, 60

    def repr_int(self, x: int, level: int) -> str:
        return super().repr_int(x, level) if x.bit_length() <= 256 else f"<an integer of {x.bit_length()} bits>"


_SHORT = _ShortRepr()


def short(value: Any) -> str:
    """A repr of at most 60 characters, in time and memory bounded whatever `value` holds."""
    text = _SHORT.repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
