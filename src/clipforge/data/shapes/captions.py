"""The shapes world's caption language: templates, synonyms, relations, counts and the vocabulary.

Captions depend only on the scene's objects (never on how they are drawn), so every variety of the
world speaks the same language and :func:`vocabulary` is the same for all of them.
"""

from __future__ import annotations

import re
from typing import Any, Sequence

import numpy as np

from .attributes import (
    COLOUR_NAMES,
    POSITIONS,
    SHAPES,
    SIZES,
    STYLES,
    TASKS,
    ObjectSpec,
    _pick,
    relation_between,
)

SIZE_WORDS = {"small": ("small", "little", "tiny"), "large": ("large", "big")}
STYLE_WORDS = {"filled": ("filled", "solid"), "outline": ("outlined", "hollow")}
COLOUR_WORDS = {c: (c,) for c in COLOUR_NAMES} | {"purple": ("purple", "violet")}
SHAPE_WORDS = {s: (s,) for s in SHAPES} | {
    "square": ("square", "box"),
    "diamond": ("diamond", "rhombus"),
    "cross": ("cross", "plus"),
}
SYNONYM_PROBABILITY = 0.2  # chance of a non-canonical synonym (colour or shape word)
PLURALS = {"box": "boxes", "cross": "crosses", "plus": "pluses", "rhombus": "rhombuses"}
NUMBER_WORDS = {1: "one", 2: "two", 3: "three"}
POSITION_PHRASES = {
    "left": ("on the left", "at the left", "on the left side"),
    "right": ("on the right", "at the right", "on the right side"),
    "top": ("at the top", "near the top", "on the top side"),
    "bottom": ("at the bottom", "near the bottom", "on the bottom side"),
    "centre": ("in the centre", "in the middle", "at the centre"),
}
POSITION_SUFFIXES = ("", "", "", " of the image", " of the picture")
RELATION_PHRASES = {
    "left_of": ("to the left of", "left of", "on the left of"),
    "right_of": ("to the right of", "right of", "on the right of"),
    "above": ("above", "over"),
    "below": ("below", "under", "beneath"),
}
SINGLE_TEMPLATES = (
    "{np}.",
    "a photo of {np}.",
    "an image of {np}.",
    "a picture of {np}.",
    "there is {np}.",
    "a photo showing {np}.",
)
SINGLE_POSITION_TEMPLATES = (
    "{np} {pos}.",
    "a photo of {np} {pos}.",
    "there is {np} {pos}.",
    "{pos} there is {np}.",
    "an image of {np} {pos}.",
    "{np}, {pos}.",
)
RELATION_TEMPLATES = (
    "{a} {rel} {b}.",
    "a photo of {a} {rel} {b}.",
    "{a} is {rel} {b}.",
    "there is {a} {rel} {b}.",
)
LIST_TEMPLATES = (
    "{list}.",
    "a photo of {list}.",
    "an image with {list}.",
    "{n} shapes: {list}.",
)
COUNT_TEMPLATES = ("{list}.", "a photo of {list}.", "an image with {list}.", "there are {list}.")

#: Zero-shot prompt templates per classification task (only vocabulary words).
TASK_TEMPLATES: dict[str, tuple[str, ...]] = {
    "shape": ("a photo of a {}.", "a {}.", "there is a {}.", "an image of a {}.", "a picture of a {}."),
    "colour": ("a photo of the {} shape.", "the {} shape.", "a shape in {}.", "an image of the {} shape."),
    "shape_colour": ("a photo of the {}.", "the {}.", "an image of the {}.", "a picture of the {}."),
    "size": ("a photo of a {} shape.", "a {} shape.", "there is a {} shape.", "an image of a {} shape."),
    "position": ("a shape {}.", "a photo of a shape {}.", "there is a shape {}.", "an image of a shape {}."),
    "style": ("a photo of the {} shape.", "the {} shape.", "an image of the {} shape."),
}


def _words(text: str) -> list[str]:
    """The tokenisation under which :func:`vocabulary` is complete."""
    return re.findall(r"[a-z]+", text.lower())


# ---------------------------------------------------------------------------
# Captions
# ---------------------------------------------------------------------------


def _article(words: list[str]) -> list[str]:
    """Turn a leading 'a' into 'an' before a vowel sound."""
    if len(words) > 1 and words[0] == "a" and words[1][0] in "aeiou":
        return ["an", *words[1:]]
    return words


def _noun_phrase(
    rng: np.random.Generator,
    obj: ObjectSpec,
    *,
    count: int = 1,
    determiners: Sequence[str] = ("a", "a", "a", "a", "one", "the"),
    size_p: float = 0.7,
    style_p: float = 0.4,
    generic_p: float = 0.0,
) -> str:
    """Describe one object (or ``count`` identical ones) with varied wording."""
    size = _pick(rng, SIZE_WORDS[obj.size]) if rng.random() < size_p else None
    style = _pick(rng, STYLE_WORDS[obj.style]) if rng.random() < style_p else None
    colour = _synonym(rng, COLOUR_WORDS[obj.colour])
    noun = "shape" if rng.random() < generic_p else _synonym(rng, SHAPE_WORDS[obj.shape])
    if count > 1:
        noun = PLURALS.get(noun, noun + "s")
    form = rng.random()
    if form < 0.15:
        body = [size, style, noun, "in", colour]
    elif form < 0.25 and size is not None:
        body = [style, colour, noun, "that", "is" if count == 1 else "are", size]
    elif form < 0.35 and size is not None and style is not None:
        body = [style, size, colour, noun]
    else:
        body = [size, style, colour, noun]
    det = NUMBER_WORDS[count] if count > 1 else _pick(rng, determiners)
    return " ".join(_article([det, *(w for w in body if w is not None)]))


def _synonym(rng: np.random.Generator, options: Sequence[str]) -> str:
    if len(options) > 1 and rng.random() < SYNONYM_PROBABILITY:
        return _pick(rng, options[1:])
    return options[0]


def _position_phrase(rng: np.random.Generator, position: str) -> str:
    return _pick(rng, POSITION_PHRASES[position]) + _pick(rng, POSITION_SUFFIXES)


def _dets_for(template: str) -> tuple[str, ...]:
    """Determiners that read naturally in a template ('there is the ...' does not)."""
    return ("a", "a", "a", "one") if "there is" in template else ("a", "a", "a", "a", "one", "the")


def _join(phrases: list[str]) -> str:
    if len(phrases) == 1:
        return phrases[0]
    return ", ".join(phrases[:-1]) + " and " + phrases[-1]


def _single_caption(rng: np.random.Generator, obj: ObjectSpec) -> tuple[str, dict[str, Any]]:
    with_pos = rng.random() < 0.5
    template = _pick(rng, SINGLE_POSITION_TEMPLATES if with_pos else SINGLE_TEMPLATES)
    np_ = _noun_phrase(rng, obj, generic_p=0.1, determiners=_dets_for(template))
    pos = _position_phrase(rng, obj.position) if with_pos else ""
    return template.format(np=np_, pos=pos), {
        "caption_kind": "single",
        "stated_positions": [0] if with_pos else [],
        "relations": [],
    }


def _count_caption(rng: np.random.Generator, objects: list[ObjectSpec]) -> tuple[str, dict[str, Any]]:
    groups: dict[tuple[str, str], list[ObjectSpec]] = {}
    for obj in objects:
        groups.setdefault((obj.shape, obj.colour), []).append(obj)
    phrases = []
    for members in sorted(groups.values(), key=len, reverse=True):
        same_size = len({m.size for m in members}) == 1
        same_style = len({m.style for m in members}) == 1
        phrases.append(
            _noun_phrase(
                rng,
                members[0],
                count=len(members),
                size_p=0.6 if same_size else 0.0,
                style_p=0.3 if same_style else 0.0,
                determiners=("a", "one"),
            )
        )
    text = _pick(rng, COUNT_TEMPLATES).format(list=_join(phrases))
    return text, {"caption_kind": "count", "stated_positions": [], "relations": []}


def _list_caption(rng: np.random.Generator, objects: list[ObjectSpec]) -> tuple[str, dict[str, Any]]:
    order = [int(k) for k in rng.permutation(len(objects))]
    with_pos = rng.random() < 0.5
    phrases = []
    for k in order:
        phrase = _noun_phrase(rng, objects[k], determiners=("a", "a", "one"))
        if with_pos:
            phrase += " " + _position_phrase(rng, objects[k].position)
        phrases.append(phrase)
    text = _pick(rng, LIST_TEMPLATES).format(list=_join(phrases), n=NUMBER_WORDS[len(objects)])
    return text, {"caption_kind": "list", "stated_positions": order if with_pos else [], "relations": []}


def _relation_caption(rng: np.random.Generator, objects: list[ObjectSpec]) -> tuple[str, dict[str, Any]] | None:
    order = [int(k) for k in rng.permutation(len(objects))]
    a, b = order[0], order[1]
    relation = relation_between(objects[a], objects[b])
    if relation is None:
        return None
    dets = ("a", "a", "one")
    text = _pick(rng, RELATION_TEMPLATES).format(
        a=_noun_phrase(rng, objects[a], determiners=dets),
        rel=_pick(rng, RELATION_PHRASES[relation]),
        b=_noun_phrase(rng, objects[b], determiners=dets),
    )
    stated = []
    if len(objects) == 3:
        c = order[2]
        extra = _noun_phrase(rng, objects[c], determiners=dets)
        if rng.random() < 0.5:
            extra += " " + _position_phrase(rng, objects[c].position)
            stated = [c]
        text = text[:-1] + ", and " + extra + "."
    return text, {"caption_kind": "relation", "stated_positions": stated, "relations": [(a, relation, b)]}


def make_caption(rng: np.random.Generator, objects: list[ObjectSpec]) -> tuple[str, dict[str, Any]]:
    """Caption a scene; also return which positions/relations the caption states."""
    if len(objects) == 1:
        return _single_caption(rng, objects[0])
    if len({(o.shape, o.colour) for o in objects}) < len(objects):
        return _count_caption(rng, objects)
    if rng.random() < 0.5:
        result = _relation_caption(rng, objects)
        if result is not None:
            return result
    return _list_caption(rng, objects)


def _template_strings() -> list[str]:
    strings: list[str] = [
        *SINGLE_TEMPLATES,
        *SINGLE_POSITION_TEMPLATES,
        *RELATION_TEMPLATES,
        *LIST_TEMPLATES,
        *COUNT_TEMPLATES,
        "shape shapes that is are in and",
    ]  # words added outside templates
    strings += [t for ts in TASK_TEMPLATES.values() for t in ts]
    return strings


PUNCTUATION: tuple[str, ...] = (",", ".", ":")


def vocabulary(punctuation: bool = False) -> list[str]:
    """Every word a caption or prompt template can contain (sorted, lowercase).

    Words are ``re.findall(r"[a-z]+", text.lower())``; captions otherwise contain
    only spaces and :data:`PUNCTUATION`, which ``punctuation=True`` appends (so a
    word-level tokenizer that splits off punctuation is complete too). Covers
    captions of every split and shift plus the class names and prompt templates
    of :class:`ShapesClassification`.
    """
    pieces: list[str] = _template_strings()
    for table in (SIZE_WORDS, STYLE_WORDS, COLOUR_WORDS, SHAPE_WORDS, POSITION_PHRASES, RELATION_PHRASES):
        pieces += [w for options in table.values() for w in options]
    pieces += [PLURALS.get(w, w + "s") for options in SHAPE_WORDS.values() for w in options]
    pieces += [*NUMBER_WORDS.values(), *POSITION_SUFFIXES, "a an one the"]
    pieces += [name for task in TASKS for name in _task_classes(task)[1]]
    words = sorted({w for piece in pieces for w in _words(piece)})
    return words + list(PUNCTUATION) if punctuation else words


def _task_classes(task: str) -> tuple[list[str], list[str]]:
    """(labels, classnames) of a task: canonical values and prompt-ready names."""
    if task == "shape":
        return list(SHAPES), list(SHAPES)
    if task == "colour":
        return list(COLOUR_NAMES), list(COLOUR_NAMES)
    if task == "shape_colour":
        names = [f"{c} {s}" for s in SHAPES for c in COLOUR_NAMES]
        return names, names
    if task == "size":
        return list(SIZES), list(SIZES)
    if task == "position":
        return list(POSITIONS), [POSITION_PHRASES[p][0] for p in POSITIONS]
    if task == "style":
        return list(STYLES), ["filled", "outlined"]
    raise ValueError(f"task must be one of {TASKS}, got {task!r}")
