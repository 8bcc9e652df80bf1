"""MetaCLIP sub-string matching: which metadata entries occur in a caption.

The rule (MetaCLIP's `substr_matching.py`, plus lower-casing): a caption is lower-cased, padded
with one space on each side, each of `, . ; : ? ! `` gets a space on either side and tabs, newlines
and carriage returns become spaces; an entry matches if `" " + entry + " "` occurs in that text.
So entries match on word boundaries (`cat` matches "A cat." but not "category" or "cats"), an entry
may hold several words (`red circle`), and overlapping entries all match (`red`, `red circle` and
`circle` in "a red circle"). Entries get the same normalisation (lower-cased, punctuation spaced), so
an entry written with punctuation (`st. louis`) matches a caption that writes it the same way.

One Aho–Corasick automaton (`pyahocorasick`) finds every entry of a caption in one scan of it, so
500,000 entries cost no more per caption than 50.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import ahocorasick

from ..data.captions import read_captions
from ..data.columns import is_manifest

#: characters MetaCLIP wraps in spaces, and characters it turns into spaces
_WRAPPED = (",", ".", ";", ":", "?", "!", "`")
_SPACED = ("\t", "\n", "\r")


def normalise(text: str) -> str:
    """The text matching searches: lower-cased, padded, punctuation wrapped in spaces, tabs/newlines spaced."""
    out = f" {text.lower()} "
    for ch in _WRAPPED:
        out = out.replace(ch, f" {ch} ")
    for ch in _SPACED:
        out = out.replace(ch, " ")
    return out


def entry_key(entry: str) -> str:
    """What the automaton searches for an entry: its normalised text between single spaces ("" if blank)."""
    core = normalise(entry).strip(" ")
    return f" {core} " if core else ""


def read_metadata(path: str | Path) -> list[str]:
    """The entries of a metadata file: one per line of a UTF-8 `.txt` file (blank lines left out, order
    kept), or the caption/text column of a manifest (`clipforge.data.captions.read_captions` reads both)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"metadata file {str(path)!r} does not exist")
    if path.suffix.lower() not in (".txt", "") and not is_manifest(path):
        raise ValueError(f"{path}: metadata is a .txt file with one entry per line (or a manifest's text column)")
    entries = list(read_captions(path).captions)
    if not entries:
        raise ValueError(f"{path}: no metadata entries (expected one entry per line)")
    return entries


class EntryMatcher:
    """The metadata entries in one automaton; `match(caption)` is the sorted ids of the entries it holds.

    Entries that normalise to the same key (`Cat` and `cat`) are one entry: the first keeps its id and
    text, the later ones are listed in `duplicates`. Entry ids index `entries`.
    """

    def __init__(self, entries: Sequence[str]) -> None:
        self.entries: list[str] = []
        self.duplicates: list[str] = []
        automaton = ahocorasick.Automaton()
        seen: set[str] = set()
        for entry in entries:
            key = entry_key(entry)
            if not key:
                continue
            if key in seen:
                self.duplicates.append(entry)
                continue
            seen.add(key)
            automaton.add_word(key, len(self.entries))
            self.entries.append(entry)
        if not self.entries:
            raise ValueError("no metadata entries (every entry is blank)")
        automaton.make_automaton()
        self._automaton = automaton

    def __len__(self) -> int:
        return len(self.entries)

    def match(self, caption: str) -> list[int]:
        """Ids of the entries that occur in `caption`, each once, ascending."""
        return sorted({entry_id for _, entry_id in self._automaton.iter(normalise(caption))})

    def match_texts(self, texts: Sequence[str]) -> list[int]:
        """Ids of the entries that occur in any of `texts` (a pair with several captions)."""
        if len(texts) == 1:
            return self.match(texts[0])
        return sorted({i for text in texts for i in self.match(text)})
