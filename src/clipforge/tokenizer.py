"""Text tokenizers: OpenAI CLIP byte-level BPE (exact reference ids) and a small word-level tokenizer.

Both tokenizers turn strings into `[N, context_length]` LongTensors laid out as
`[sot] + ids + [eot] + padding`, which is what CLIP text towers expect (the eot position is found
with argmax for the OpenAI vocabulary, so the pad id must stay 0).

`BPETokenizer` reproduces the tokenizer OpenAI CLIP / OpenCLIP models were trained with, id for id:
the same text cleaning (ftfy, double html unescape, whitespace collapse, lower-case), the same
pre-tokenization regex, the same byte-to-unicode table and the same BPE merge order. Its
vocabulary comes from OpenAI's `bpe_simple_vocab_16e6.txt.gz` merges file or from a Hugging Face
checkpoint directory (`vocab.json` + `merges.txt`); see `find_default_bpe_file`.

`WordTokenizer` is for models trained inside this project on small closed vocabularies, where a
49408-row embedding table would dominate the model size.

`HFTokenizer` runs a checkpoint's own Hugging Face tokenizer files (SigLIP's SentencePiece, any
`tokenizer.json`) through transformers, padded to the full context as those models were trained;
`MissingTokenizer` stands in when a checkpoint lacks them, so the weights still load and only text
encoding fails, naming the files.
"""

from __future__ import annotations

import abc
import collections
import gzip
import heapq
import html
import importlib.metadata
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import ftfy
import regex
import torch

__all__ = [
    "BPE_FILENAME",
    "BPETokenizer",
    "DEFAULT_CONTEXT_LENGTH",
    "ENV_BPE_PATH",
    "OPENAI_NUM_MERGES",
    "TOKENIZER_CONFIG_NAME",
    "HFTokenizer",
    "MissingTokenizer",
    "Tokenizer",
    "Truncate",
    "WordTokenizer",
    "bytes_to_unicode",
    "clean_text",
    "find_default_bpe_file",
    "load_tokenizer",
]

DEFAULT_CONTEXT_LENGTH = 77
SOT_TOKEN = "<|startoftext|>"
EOT_TOKEN = "<|endoftext|>"
END_OF_WORD = "</w>"
# OpenAI keeps merges[1 : 49152 - 256 - 2 + 1]: 48894 merges, so 512 + 48894 + 2 = 49408 ids.
OPENAI_NUM_MERGES = 49152 - 256 - 2
BPE_FILENAME = "bpe_simple_vocab_16e6.txt.gz"
ENV_BPE_PATH = "CLIPFORGE_BPE_PATH"
TOKENIZER_CONFIG_NAME = "tokenizer_config.json"
VOCAB_NAME = "vocab.json"
MERGES_NAME = "merges.txt"
MERGES_HEADER = "#version: 0.2"

Truncate = Literal["eot", "error"]
_TRUNCATE_MODES = ("eot", "error")

# The OpenAI pre-tokenization pattern. Applied to lower-cased text, so IGNORECASE only matters for
# the special tokens, and it is kept for parity with the reference.
_CLIP_PATTERN = regex.compile(
    r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
    regex.IGNORECASE,
)
# Same split without the special tokens, for the word-level tokenizer.
_WORD_PATTERN = regex.compile(
    r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""", regex.IGNORECASE
)

# Words up to this many characters are memoised; longer ones are rare and would bloat the cache.
_CACHE_MAX_WORD_CHARS = 100
_CACHE_MAX_ENTRIES = 200_000
# Words with more byte-symbols than this use the O(n log n) heap merger instead of the quadratic
# reference-style loop. Both give identical results (tested).
_HEAP_MERGE_MIN_SYMBOLS = 64


def clean_text(text: str) -> str:
    """Normalise text exactly like OpenAI CLIP before splitting it into words.

    ftfy.fix_text, html.unescape applied twice, whitespace runs collapsed to one space (which also
    strips), then lower-case. The order matters for exact ids, e.g. `&amp;lt;` becomes `<`.
    """
    text = ftfy.fix_text(text)
    text = html.unescape(html.unescape(text))
    return " ".join(text.split()).lower()


def bytes_to_unicode() -> dict[int, str]:
    """Map every byte to a printable unicode character (the GPT-2 / CLIP table).

    BPE runs on strings, so each UTF-8 byte needs a visible, non-whitespace stand-in. Printable
    latin-1 bytes map to themselves; the remaining 68 map to U+0100 onward, in byte order. The
    dict's insertion order is the order of the first 256 vocabulary entries.
    """
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("\N{INVERTED EXCLAMATION MARK}"), ord("\N{NOT SIGN}") + 1),
        *range(ord("\N{REGISTERED SIGN}"), ord("\N{LATIN SMALL LETTER Y WITH DIAERESIS}") + 1),
    ]
    table = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def _merge_pairs_simple(symbols: list[str], ranks: Mapping[tuple[str, str], int]) -> list[str]:
    """Apply BPE merges the way the reference does: lowest-rank pair first, all its occurrences
    merged left to right, repeat. Quadratic, but fastest for ordinary short words."""
    word = symbols
    while len(word) > 1:
        best_rank = -1
        best: tuple[str, str] | None = None
        for pair in zip(word, word[1:]):
            rank = ranks.get(pair)
            if rank is not None and (best is None or rank < best_rank):
                best_rank, best = rank, pair
        if best is None:
            break
        first, second = best
        merged = first + second
        out: list[str] = []
        i, n = 0, len(word)
        while i < n:
            if i < n - 1 and word[i] == first and word[i + 1] == second:
                out.append(merged)
                i += 2
            else:
                out.append(word[i])
                i += 1
        word = out
    return word


def _merge_pairs_heap(symbols: list[str], ranks: Mapping[tuple[str, str], int]) -> list[str]:
    """Same result as `_merge_pairs_simple` in O(n log n), for very long words.

    Works in rounds: pop every heap entry of the current lowest rank, apply them in position
    order (so overlapping occurrences resolve left to right, like the reference), and only then
    push the pairs the round created. A merged symbol is longer than both its parts, so a round
    can never create another occurrence of its own pair; deferring the pushes makes the order
    exact even for merge tables where a new pair outranks the current one.
    """
    n = len(symbols)
    sym = list(symbols)
    nxt = list(range(1, n)) + [-1]
    prv = list(range(-1, n - 1))
    alive = [True] * n
    heap: list[tuple[int, int]] = []
    for i in range(n - 1):
        rank = ranks.get((sym[i], sym[i + 1]))
        if rank is not None:
            heap.append((rank, i))
    heapq.heapify(heap)
    while heap:
        rank = heap[0][0]
        positions = []
        while heap and heap[0][0] == rank:
            positions.append(heapq.heappop(heap)[1])
        positions.sort()
        touched = []
        for i in positions:
            j = nxt[i]
            if not alive[i] or j == -1 or ranks.get((sym[i], sym[j])) != rank:
                continue  # stale entry: a neighbour changed since it was pushed
            sym[i] = sym[i] + sym[j]
            alive[j] = False
            k = nxt[j]
            nxt[i] = k
            if k != -1:
                prv[k] = i
            touched.append(i)
        for i in touched:
            if not alive[i]:
                continue
            p = prv[i]
            if p != -1:
                r = ranks.get((sym[p], sym[i]))
                if r is not None:
                    heapq.heappush(heap, (r, p))
            k = nxt[i]
            if k != -1:
                r = ranks.get((sym[i], sym[k]))
                if r is not None:
                    heapq.heappush(heap, (r, i))
    out = []
    i = 0
    while i != -1:
        out.append(sym[i])
        i = nxt[i]
    return out


def _check_context_length(value: Any, name: str = "context_length") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 2:
        raise ValueError(f"{name} must be an int >= 2 (room for sot and eot), got {value!r}")
    return value


def _check_truncate(value: Any) -> Truncate:
    if value not in _TRUNCATE_MODES:
        raise ValueError(f"truncate must be one of {_TRUNCATE_MODES}, got {value!r}")
    return value


def _as_text_list(texts: str | Sequence[str]) -> list[str]:
    """Accept one string or a sequence of strings; reject anything else with the offending index."""
    if isinstance(texts, str):
        return [texts]
    if isinstance(texts, (bytes, bytearray)) or not isinstance(texts, Iterable):
        raise TypeError(f"texts must be a str or a sequence of str, got {type(texts).__name__}")
    items = list(texts)
    for i, item in enumerate(items):
        if not isinstance(item, str):
            raise TypeError(f"texts[{i}] must be a str, got {type(item).__name__}")
    return items


def _as_id_list(ids: Iterable[int] | torch.Tensor) -> list[int]:
    if isinstance(ids, torch.Tensor):
        if ids.dim() != 1:
            raise ValueError(f"decode expects a 1-D sequence of ids, got a tensor of shape {tuple(ids.shape)}")
        return [int(t) for t in ids.tolist()]
    return [int(t) for t in ids]


@runtime_checkable
class Tokenizer(Protocol):
    """What the rest of clipforge relies on from a tokenizer.

    `__call__` returns a `[N, context_length]` int64 tensor `[sot] + ids + [eot]` padded with
    `pad_token_id`; `truncate` selects what happens to texts that do not fit ("eot" keeps the
    first `context_length - 2` ids and ends with eot, "error" raises ValueError).
    """

    sot_token_id: int
    eot_token_id: int
    pad_token_id: int
    context_length: int
    vocab_size: int
    truncate: Truncate
    #: whether rows start with `sot_token_id` (SigLIP's SentencePiece rows do not)
    has_sot: bool

    def encode(self, text: str, max_tokens: int | None = None) -> list[int]: ...

    def decode(self, ids: Iterable[int] | torch.Tensor) -> str: ...

    def __call__(
        self,
        texts: str | Sequence[str],
        context_length: int | None = None,
        truncate: Truncate | None = None,
    ) -> torch.Tensor: ...

    def save(self, directory: str | os.PathLike[str]) -> Path: ...

    def unknown_words(self, texts: str | Sequence[str]) -> list[str]:
        """Words of `texts` the vocabulary cannot represent (each would become one unknown token),
        in order of first appearance, without repeats; [] for tokenizers that encode any text."""
        ...


class _TokenizerBase(abc.ABC):
    """Shared batching, truncation and decoding logic; subclasses supply encode and id→text."""

    sot_token_id: int
    eot_token_id: int
    pad_token_id: int
    vocab_size: int
    has_sot = True

    def __init__(self, context_length: int, truncate: Truncate) -> None:
        self.context_length = _check_context_length(context_length)
        self.truncate: Truncate = _check_truncate(truncate)

    @abc.abstractmethod
    def encode(self, text: str, max_tokens: int | None = None) -> list[int]:
        """Ids of `text` without special tokens; stops after `max_tokens` ids when given."""

    @abc.abstractmethod
    def _decode_content(self, ids: list[int]) -> str:
        """Text of content ids (no special tokens)."""

    @abc.abstractmethod
    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Write the files `load_tokenizer` needs into `directory`."""

    def __call__(
        self,
        texts: str | Sequence[str],
        context_length: int | None = None,
        truncate: Truncate | None = None,
    ) -> torch.Tensor:
        """Tokenize one text or a batch into a `[N, context_length]` LongTensor.

        Each row is `[sot] + ids + [eot]` padded with `pad_token_id`. A text with more than
        `context_length - 2` ids is cut to `[sot] + ids[:context_length - 2] + [eot]` when
        truncate="eot" (identical to OpenAI `clip.tokenize(truncate=True)` / OpenCLIP), or raises
        ValueError when truncate="error". Only the ids that can be kept are computed, so very long
        texts cost little beyond text cleaning.
        """
        items = _as_text_list(texts)
        ctx = self.context_length if context_length is None else _check_context_length(context_length)
        mode = self.truncate if truncate is None else _check_truncate(truncate)
        keep = ctx - 2
        out = torch.full((len(items), ctx), self.pad_token_id, dtype=torch.long)
        for row, text in enumerate(items):
            # One id beyond what fits is enough to know whether the text overflows.
            ids = self.encode(text, max_tokens=keep + 1)
            if len(ids) > keep:
                if mode == "error":
                    total = len(self.encode(text)) + 2
                    raise ValueError(
                        f"text {row} has {total} tokens including sot/eot, more than "
                        f"context_length={ctx} allows (truncate='error'); shorten it, raise "
                        "context_length, or use truncate='eot'"
                    )
                ids = ids[:keep]
            seq = [self.sot_token_id, *ids, self.eot_token_id]
            out[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        return out

    def decode(self, ids: Iterable[int] | torch.Tensor) -> str:
        """Text of a sequence of ids: sot and eot dropped, everything after the first eot treated
        as padding, pad ids dropped where they cannot be content (see subclasses)."""
        seq = _as_id_list(ids)
        if self.eot_token_id in seq:
            seq = seq[: seq.index(self.eot_token_id)]
        seq = [t for t in seq if t != self.sot_token_id and not self._is_pad_only(t)]
        for t in seq:
            if not 0 <= t < self.vocab_size:
                raise ValueError(f"id {t} is outside the vocabulary (size {self.vocab_size})")
        return self._decode_content(seq)

    def _is_pad_only(self, token_id: int) -> bool:
        """True if `token_id` is padding wherever it appears (not also a content id)."""
        return False

    def unknown_words(self, texts: str | Sequence[str]) -> list[str]:
        """Words of `texts` this tokenizer cannot represent, in order of first appearance, without
        repeats. A byte-level BPE encodes every text, so the default is none."""
        _as_text_list(texts)
        return []


class BPETokenizer(_TokenizerBase):
    """OpenAI CLIP byte-level BPE tokenizer with ids identical to the reference implementation.

    Build it with `from_bpe_file` (OpenAI merges file), `from_vocab_merges` (Hugging Face
    `vocab.json` + `merges.txt`), `from_tokenizer_json`, or `load_tokenizer`. Special ids:
    sot 49406, eot 49407; padding uses 0 like OpenAI (0 is also the id of "!", so `decode` treats
    only ids after the first eot as padding).
    """

    pad_token_id = 0

    def __init__(
        self,
        encoder: Mapping[str, int],
        merges: Sequence[tuple[str, str]],
        context_length: int = DEFAULT_CONTEXT_LENGTH,
        truncate: Truncate = "eot",
    ) -> None:
        """`encoder` maps token strings to ids; `merges` lists BPE merges, highest priority first."""
        super().__init__(context_length, truncate)
        self.encoder: dict[str, int] = dict(encoder)
        self.decoder: dict[int, str] = {i: t for t, i in self.encoder.items()}
        if len(self.decoder) != len(self.encoder):
            raise ValueError("vocabulary maps two tokens to the same id")
        for name in (SOT_TOKEN, EOT_TOKEN):
            if name not in self.encoder:
                raise ValueError(f"vocabulary lacks the special token {name!r}; not a CLIP BPE vocabulary")
        self.merges: list[tuple[str, str]] = [tuple(m) for m in merges]  # type: ignore[misc]
        for k, m in enumerate(self.merges):
            if len(m) != 2:
                raise ValueError(f"merge {k} must be a pair of symbols, got {m!r}")
        self.bpe_ranks: dict[tuple[str, str], int] = {}
        for rank, pair in enumerate(self.merges):
            self.bpe_ranks.setdefault(pair, rank)
        byte_encoder = bytes_to_unicode()
        missing = [c for c in byte_encoder.values() if c + END_OF_WORD not in self.encoder or c not in self.encoder]
        if missing:
            raise ValueError(f"vocabulary lacks byte symbols such as {missing[:3]!r}; not a CLIP BPE vocabulary")
        # word.encode("utf-8").decode("latin-1").translate(...) maps bytes to symbols in one C call.
        self._byte_table = {b: c for b, c in byte_encoder.items()}
        self._byte_decoder = {c: b for b, c in byte_encoder.items()}
        self.sot_token_id = self.encoder[SOT_TOKEN]
        self.eot_token_id = self.encoder[EOT_TOKEN]
        self.vocab_size = len(self.encoder)
        self._special = {SOT_TOKEN: self.sot_token_id, EOT_TOKEN: self.eot_token_id}
        self._cache: dict[str, tuple[int, ...]] = {}

    # ----------------------------------------------------------------------------- construction
    @classmethod
    def from_bpe_file(
        cls,
        path: str | os.PathLike[str] | None = None,
        context_length: int = DEFAULT_CONTEXT_LENGTH,
        truncate: Truncate = "eot",
        num_merges: int = OPENAI_NUM_MERGES,
    ) -> BPETokenizer:
        """Build from OpenAI's merges file (`.txt.gz` or plain `.txt`); default: `find_default_bpe_file()`.

        Like the reference: the header line is skipped, the next `num_merges` merges are used, and
        the vocabulary is the 256 byte symbols, the same with `</w>`, one token per merge, then
        `<|startoftext|>` and `<|endoftext|>`.
        """
        path = Path(path) if path is not None else find_default_bpe_file()
        merges = _read_merges(path, limit=num_merges)
        symbols = list(bytes_to_unicode().values())
        vocab = symbols + [s + END_OF_WORD for s in symbols] + ["".join(m) for m in merges]
        vocab += [SOT_TOKEN, EOT_TOKEN]
        encoder: dict[str, int] = {}
        for i, tok in enumerate(vocab):
            encoder[tok] = i  # a duplicate would take the later id, as dict(zip(...)) does in the reference
        if len(encoder) != len(vocab):
            raise ValueError(f"{path}: merges produce duplicate tokens; not a CLIP BPE merges file")
        return cls(encoder, merges, context_length=context_length, truncate=truncate)

    @classmethod
    def from_vocab_merges(
        cls,
        vocab_path: str | os.PathLike[str],
        merges_path: str | os.PathLike[str],
        context_length: int = DEFAULT_CONTEXT_LENGTH,
        truncate: Truncate = "eot",
    ) -> BPETokenizer:
        """Build from Hugging Face CLIP files: `vocab.json` (token → id) and `merges.txt`."""
        with open(vocab_path, encoding="utf-8") as f:
            encoder = json.load(f)
        if not isinstance(encoder, dict) or not all(isinstance(v, int) for v in encoder.values()):
            raise ValueError(f"{vocab_path}: expected a JSON object mapping tokens to int ids")
        merges = _read_merges(Path(merges_path), limit=None)
        return cls(encoder, merges, context_length=context_length, truncate=truncate)

    @classmethod
    def from_tokenizer_json(
        cls,
        path: str | os.PathLike[str],
        context_length: int = DEFAULT_CONTEXT_LENGTH,
        truncate: Truncate = "eot",
    ) -> BPETokenizer:
        """Build from a Hugging Face `tokenizer.json` holding a CLIP BPE model (suffix `</w>`)."""
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        model = data.get("model") or {}
        if model.get("type") != "BPE" or model.get("end_of_word_suffix") != END_OF_WORD:
            raise ValueError(f"{path}: not a CLIP BPE tokenizer.json (need model.type BPE with suffix '</w>')")
        encoder = dict(model["vocab"])
        for added in data.get("added_tokens") or []:
            encoder.setdefault(added["content"], added["id"])
        merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
        return cls(encoder, merges, context_length=context_length, truncate=truncate)  # type: ignore[arg-type]

    # ----------------------------------------------------------------------------- encoding
    def _word_ids(self, word: str) -> tuple[int, ...]:
        """BPE ids of one pre-tokenized word, memoised for short words."""
        cached = self._cache.get(word)
        if cached is not None:
            return cached
        special = self._special.get(word)
        if special is not None:
            return (special,)
        symbols = list(word.encode("utf-8").decode("latin-1").translate(self._byte_table))
        symbols[-1] += END_OF_WORD
        if len(symbols) >= _HEAP_MERGE_MIN_SYMBOLS:
            pieces = _merge_pairs_heap(symbols, self.bpe_ranks)
        else:
            pieces = _merge_pairs_simple(symbols, self.bpe_ranks)
        try:
            ids = tuple(self.encoder[p] for p in pieces)
        except KeyError as e:
            raise ValueError(f"BPE produced {e.args[0]!r}, which is not in the vocabulary") from None
        if len(word) <= _CACHE_MAX_WORD_CHARS:
            if len(self._cache) >= _CACHE_MAX_ENTRIES:
                self._cache.clear()
            self._cache[word] = ids
        return ids

    def encode(self, text: str, max_tokens: int | None = None) -> list[int]:
        """Ids of `text` without sot/eot, exactly as the reference tokenizer computes them.

        With `max_tokens`, returns the first `max_tokens` ids of the full result and stops early:
        words are split by a regex on the cleaned text and encoded independently, so later words
        cannot change earlier ids. The whole text is still cleaned first (ftfy and html unescape
        are not prefix-stable in general), which is linear in its length.
        """
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        ids: list[int] = []
        for match in _CLIP_PATTERN.finditer(clean_text(text)):
            ids.extend(self._word_ids(match.group()))
            if max_tokens is not None and len(ids) >= max_tokens:
                return ids[:max_tokens]
        return ids

    def _decode_content(self, ids: list[int]) -> str:
        pieces = "".join(self.decoder[t] for t in ids)
        # Special tokens embedded in content (from literal "<|endoftext|>" text) are not byte symbols.
        raw = bytearray()
        for ch in pieces.replace(END_OF_WORD, " "):
            b = self._byte_decoder.get(ch)
            raw.extend(ch.encode("utf-8") if b is None else (b,))
        return raw.decode("utf-8", errors="replace").strip()

    # ----------------------------------------------------------------------------- saving
    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Write `vocab.json` + `merges.txt` (Hugging Face CLIP format) and `tokenizer_config.json`."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        vocab = dict(sorted(self.encoder.items(), key=lambda kv: kv[1]))
        (directory / VOCAB_NAME).write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
        lines = [MERGES_HEADER, *(f"{a} {b}" for a, b in self.merges)]
        (directory / MERGES_NAME).write_text("\n".join(lines) + "\n", encoding="utf-8")
        config = {"kind": "bpe", "context_length": self.context_length}
        (directory / TOKENIZER_CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        return directory

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_cache"] = {}  # keep pickles (e.g. to DataLoader workers) small
        return state

    def __repr__(self) -> str:
        return (
            f"BPETokenizer(vocab_size={self.vocab_size}, context_length={self.context_length}, "
            f"truncate={self.truncate!r})"
        )


class WordTokenizer(_TokenizerBase):
    """Word-level tokenizer for small project-trained models with a closed vocabulary.

    Ids: 0 pad, 1 sot, 2 eot, 3 unk, then the words in the given order. Text is cleaned like the
    BPE tokenizer (ftfy, html unescape, whitespace, lower-case) and split with the same regex
    (letter runs, single digits, punctuation runs, English contractions); unknown words map to unk.
    """

    pad_token_id = 0
    sot_token_id = 1
    eot_token_id = 2
    unk_token_id = 3
    SPECIAL_TOKENS = ("<pad>", "<sot>", "<eot>", "<unk>")

    def __init__(
        self,
        words: Iterable[str],
        context_length: int = DEFAULT_CONTEXT_LENGTH,
        truncate: Truncate = "eot",
    ) -> None:
        """`words` must be distinct and each exactly one token of the split (lower-case, no
        spaces, a digit is a word on its own), otherwise it could never be produced by `encode`."""
        super().__init__(context_length, truncate)
        self.words: list[str] = list(words)
        offset = len(self.SPECIAL_TOKENS)
        self._ids: dict[str, int] = {}
        for i, word in enumerate(self.words):
            if not isinstance(word, str):
                raise TypeError(f"words[{i}] must be a str, got {type(word).__name__}")
            if _WORD_PATTERN.findall(clean_text(word)) != [word]:
                raise ValueError(f"words[{i}]={word!r} is not a single lower-case token of the word split")
            if word in self._ids:
                raise ValueError(f"words[{i}]={word!r} is a duplicate")
            self._ids[word] = offset + i
        self.vocab_size = offset + len(self.words)

    @classmethod
    def build(
        cls,
        texts: Iterable[str],
        min_count: int = 1,
        max_words: int | None = None,
        context_length: int = DEFAULT_CONTEXT_LENGTH,
        truncate: Truncate = "eot",
    ) -> WordTokenizer:
        """Vocabulary of the words seen at least `min_count` times in `texts`, most frequent first
        (ties alphabetical, so the result is deterministic), optionally capped at `max_words`."""
        if isinstance(texts, str):
            raise TypeError("texts must be an iterable of str, not a single str")
        counts: collections.Counter[str] = collections.Counter()
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"texts[{i}] must be a str, got {type(text).__name__}")
            counts.update(_WORD_PATTERN.findall(clean_text(text)))
        ranked = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
        if max_words is not None:
            ranked = ranked[:max_words]
        return cls(ranked, context_length=context_length, truncate=truncate)

    def encode(self, text: str, max_tokens: int | None = None) -> list[int]:
        """Word ids of `text` without sot/eot (unknown words → `unk_token_id`)."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        ids: list[int] = []
        for match in _WORD_PATTERN.finditer(clean_text(text)):
            ids.append(self._ids.get(match.group(), self.unk_token_id))
            if max_tokens is not None and len(ids) >= max_tokens:
                break
        return ids

    def unknown_words(self, texts: str | Sequence[str]) -> list[str]:
        """Words (as split and lower-cased by `encode`) outside the vocabulary: each becomes the one
        `<unk>` id, so texts differing only in unknown words get identical tokens."""
        found: dict[str, None] = {}
        for text in _as_text_list(texts):
            for match in _WORD_PATTERN.finditer(clean_text(text)):
                word = match.group()
                if word not in self._ids:
                    found.setdefault(word, None)
        return list(found)

    def _is_pad_only(self, token_id: int) -> bool:
        return token_id == self.pad_token_id

    def _decode_content(self, ids: list[int]) -> str:
        offset = len(self.SPECIAL_TOKENS)
        return " ".join(self.SPECIAL_TOKENS[t] if t < offset else self.words[t - offset] for t in ids)

    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Write `tokenizer_config.json` with kind "words", the context length and the word list."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        config = {"kind": "words", "context_length": self.context_length, "words": self.words}
        (directory / TOKENIZER_CONFIG_NAME).write_text(
            json.dumps(config, ensure_ascii=False, indent=2) + "\n", encoding="utf-8"
        )
        return directory

    def __repr__(self) -> str:
        return (
            f"WordTokenizer(vocab_size={self.vocab_size}, context_length={self.context_length}, "
            f"truncate={self.truncate!r})"
        )


#: files that make a directory a Hugging Face tokenizer (beside tokenizer_config.json)
HF_TOKENIZER_FILES = ("tokenizer.json", "spiece.model", "sentencepiece.bpe.model", "tokenizer.model", "vocab.txt")


def has_hf_tokenizer(directory: Path) -> bool:
    """True when `directory` holds a Hugging Face tokenizer that is not the CLIP BPE."""
    config = directory / TOKENIZER_CONFIG_NAME
    if not config.is_file() or not any((directory / n).is_file() for n in HF_TOKENIZER_FILES):
        return False
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and "kind" not in data and not str(data.get("tokenizer_class", "")).startswith("CLIP")


class HFTokenizer:
    """A checkpoint's own Hugging Face tokenizer (transformers `AutoTokenizer` over local files).

    Rows are the tokenizer's own special tokens (SigLIP: ids then `</s>`), padded to `context_length`
    with its pad id, as SigLIP was trained (`padding="max_length"`); texts too long are cut
    (truncate="eot") or refused (truncate="error").
    """

    def __init__(self, directory: str | os.PathLike[str], context_length: int, truncate: Truncate = "eot") -> None:
        try:
            from transformers import AutoTokenizer  # optional (`hf` extra): only these checkpoints need it
        except ImportError as exc:
            raise ImportError("this checkpoint's tokenizer needs transformers: pip install 'clipforge[hf]'") from exc
        self.directory = Path(directory)
        try:
            self._tok = AutoTokenizer.from_pretrained(str(self.directory), local_files_only=True)
        except (OSError, ValueError, ImportError) as exc:
            raise ValueError(f"{self.directory}: cannot load its Hugging Face tokenizer ({exc})") from exc
        self.context_length = _check_context_length(context_length)
        self.truncate: Truncate = _check_truncate(truncate)
        tok = self._tok
        self.eot_token_id = int(tok.eos_token_id if tok.eos_token_id is not None else tok.sep_token_id or 0)
        self.has_sot = tok.bos_token_id is not None
        self.sot_token_id = int(tok.bos_token_id if tok.bos_token_id is not None else self.eot_token_id)
        self.pad_token_id = int(tok.pad_token_id if tok.pad_token_id is not None else self.eot_token_id)
        self.vocab_size = len(tok)

    def encode(self, text: str, max_tokens: int | None = None) -> list[int]:
        ids = self._tok(text, add_special_tokens=False)["input_ids"]
        return list(ids if max_tokens is None else ids[:max_tokens])

    def decode(self, ids: Iterable[int] | torch.Tensor) -> str:
        return str(self._tok.decode(_as_id_list(ids), skip_special_tokens=True))

    def __call__(
        self, texts: str | Sequence[str], context_length: int | None = None, truncate: Truncate | None = None
    ) -> torch.Tensor:
        items = _as_text_list(texts)
        ctx = self.context_length if context_length is None else _check_context_length(context_length)
        if (self.truncate if truncate is None else _check_truncate(truncate)) == "error":
            for row, text in enumerate(items):
                n = len(self._tok(text)["input_ids"])
                if n > ctx:
                    raise ValueError(
                        f"text {row} has {n} tokens, more than context_length={ctx} allows (truncate='error')"
                    )
        if not items:
            return torch.zeros(0, ctx, dtype=torch.long)
        out = self._tok(items, padding="max_length", truncation=True, max_length=ctx, return_tensors="pt")
        return out["input_ids"].long()

    def save(self, directory: str | os.PathLike[str]) -> Path:
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        self._tok.save_pretrained(str(path))
        return path

    def unknown_words(self, texts: str | Sequence[str]) -> list[str]:
        """Words encoded as the unknown token only (subword vocabularies rarely have any)."""
        unk = self._tok.unk_token_id
        if unk is None:
            return []
        found: list[str] = []
        for text in _as_text_list(texts):
            for word in text.split():
                if word not in found and self.encode(word) == [unk]:
                    found.append(word)
        return found

    def __repr__(self) -> str:
        return f"HFTokenizer({self.directory}, context_length={self.context_length})"


class MissingTokenizer:
    """Stands in for a checkpoint's tokenizer whose files are absent: the model loads and encodes
    images; any text raises `FileNotFoundError` with `reason` (which files to add, where)."""

    sot_token_id = eot_token_id = pad_token_id = 0
    vocab_size = 0
    truncate: Truncate = "eot"
    has_sot = False

    def __init__(self, reason: str, context_length: int) -> None:
        self.reason, self.context_length = reason, context_length

    def _fail(self, *args: Any, **kwargs: Any) -> Any:
        raise FileNotFoundError(self.reason)

    encode = decode = __call__ = save = unknown_words = _fail

    def __repr__(self) -> str:
        return f"MissingTokenizer({self.reason!r})"


def _read_merges(path: Path, limit: int | None) -> list[tuple[str, str]]:
    """Merges from an OpenAI (`.gz` or text) or Hugging Face merges file.

    The first line is a header (`#version: 0.2`, prefixed by a file name in OpenAI's file) and
    is skipped when it says `#version`; blank lines are ignored; `limit` keeps the first merges.
    """
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:  # type: ignore[operator]
        lines = f.read().split("\n")
    if lines and "#version" in lines[0]:
        lines = lines[1:]
    merges: list[tuple[str, str]] = []
    for lineno, line in enumerate(lines, start=2):
        if limit is not None and len(merges) >= limit:
            break
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2:
            raise ValueError(f"{path}:{lineno}: expected two symbols per merge, got {line!r}")
        merges.append((parts[0], parts[1]))
    if limit is not None and len(merges) < limit:
        raise ValueError(f"{path}: has {len(merges)} merges, expected at least {limit}")
    return merges


def find_default_bpe_file() -> Path:
    """Locate OpenAI's `bpe_simple_vocab_16e6.txt.gz` without bundling or downloading it.

    Looks at (1) the `CLIPFORGE_BPE_PATH` environment variable (the file, or a directory holding
    it), then (2) the files of the installed `open_clip_torch` distribution, found through
    importlib.metadata so that open_clip (and its torchvision dependency) is never imported.
    """
    env = os.environ.get(ENV_BPE_PATH)
    if env:
        path = Path(env).expanduser()
        if path.is_dir():
            path = path / BPE_FILENAME
        if not path.is_file():
            raise FileNotFoundError(
                f"{ENV_BPE_PATH}={env!r} does not point to {BPE_FILENAME} or a directory holding it"
            )
        return path
    try:
        dist = importlib.metadata.distribution("open_clip_torch")
    except importlib.metadata.PackageNotFoundError:
        dist = None
    if dist is not None:
        for file in dist.files or []:
            if file.name == BPE_FILENAME:
                path = Path(str(dist.locate_file(file)))
                if path.is_file():
                    return path
    raise FileNotFoundError(
        f"cannot find OpenAI's BPE merges file {BPE_FILENAME}. Install it with "
        "`pip install --no-deps open_clip_torch` (only its data file is used), set "
        f"{ENV_BPE_PATH} to the file, or load a checkpoint directory that holds "
        f"{VOCAB_NAME} + {MERGES_NAME} with load_tokenizer(directory)"
    )


def load_tokenizer(
    directory_or_file: str | os.PathLike[str],
    context_length: int | None = None,
    truncate: Truncate = "eot",
) -> BPETokenizer | WordTokenizer | HFTokenizer:
    """Load a tokenizer saved by `save`, a Hugging Face CLIP checkpoint directory, or OpenAI's file.

    Accepts: a directory with `tokenizer_config.json` of kind "words"; a directory with
    `vocab.json` + `merges.txt` (Hugging Face CLIP format, also what `BPETokenizer.save` writes);
    a directory holding `bpe_simple_vocab_16e6.txt.gz`; a directory with only a CLIP
    `tokenizer.json`; or a path to an OpenAI merges file. `context_length` overrides the saved one,
    which otherwise comes from our config, then Hugging Face's `model_max_length`, then 77.
    """
    path = Path(directory_or_file).expanduser()
    if path.is_file():
        if path.name in (TOKENIZER_CONFIG_NAME, VOCAB_NAME, MERGES_NAME):
            path = path.parent
        elif path.name == "tokenizer.json":
            return BPETokenizer.from_tokenizer_json(
                path, context_length=context_length or DEFAULT_CONTEXT_LENGTH, truncate=truncate
            )
        else:
            return BPETokenizer.from_bpe_file(
                path, context_length=context_length or DEFAULT_CONTEXT_LENGTH, truncate=truncate
            )
    if not path.is_dir():
        raise FileNotFoundError(f"no tokenizer file or directory at {path}")

    config: dict[str, Any] = {}
    config_path = path / TOKENIZER_CONFIG_NAME
    if config_path.is_file():
        with open(config_path, encoding="utf-8") as f:
            config = json.load(f)
    kind = config.get("kind")
    ctx = context_length
    if ctx is None:
        ctx = config.get("context_length")
    if ctx is None and kind is None:
        hf_max = config.get("model_max_length")  # Hugging Face stores 77 here for CLIP
        if isinstance(hf_max, int) and 2 <= hf_max <= 100_000:
            ctx = hf_max
    ctx = DEFAULT_CONTEXT_LENGTH if ctx is None else ctx

    if kind == "words":
        return WordTokenizer(config["words"], context_length=ctx, truncate=truncate)
    if has_hf_tokenizer(path):
        return HFTokenizer(path, context_length=ctx, truncate=truncate)
    if kind not in (None, "bpe"):
        raise ValueError(f"{config_path}: unknown tokenizer kind {kind!r} (expected 'bpe' or 'words')")
    if (path / VOCAB_NAME).is_file() and (path / MERGES_NAME).is_file():
        return BPETokenizer.from_vocab_merges(
            path / VOCAB_NAME, path / MERGES_NAME, context_length=ctx, truncate=truncate
        )
    if (path / BPE_FILENAME).is_file():
        return BPETokenizer.from_bpe_file(path / BPE_FILENAME, context_length=ctx, truncate=truncate)
    if (path / "tokenizer.json").is_file():
        return BPETokenizer.from_tokenizer_json(path / "tokenizer.json", context_length=ctx, truncate=truncate)
    raise FileNotFoundError(
        f"{path} holds no tokenizer: expected {TOKENIZER_CONFIG_NAME} of kind 'words', "
        f"{VOCAB_NAME} + {MERGES_NAME}, {BPE_FILENAME}, or tokenizer.json"
    )
