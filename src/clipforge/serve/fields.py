"""Field types of the request models whose rules depend on the server's `Limits`.

The limits are not known when the models are defined, so these validators read them from the
validation context: `Model.model_validate(data, context={"limits": limits})`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Strict, ValidationInfo

from ..zeroshot import TEMPLATE_SETS
from .limits import Limits


def limits_of(info: ValidationInfo) -> Limits:
    """The limits passed in the validation context (the defaults if none were)."""
    return (info.context or {}).get("limits") or Limits()


def _int_from_string(value: Any) -> Any:
    """Form fields are strings: accept decimal strings; anything else must already be an int."""
    if not isinstance(value, str):
        return value
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"must be an integer, got {value[:40]!r}") from None


def _within_max_k(value: int, info: ValidationInfo) -> int:
    top = limits_of(info).max_k
    if not 1 <= value <= top:
        raise ValueError(f"must be between 1 and {top}, got {value}")
    return value


def _clean_text(value: str, info: ValidationInfo) -> str:
    text = value.strip()
    if not text:
        raise ValueError("must not be empty")
    top = limits_of(info).max_text_chars
    if len(text) > top:
        raise ValueError(f"is {len(text)} characters long; the limit is {top}")
    return text


def _listed(value: Any) -> Any:
    """One comma-separated string is as good as a list of labels."""
    return [value] if isinstance(value, str) else value


def _class_names(values: list[str], info: ValidationInfo) -> list[str]:
    """Split on commas, drop blanks; refuse an empty, oversized, over-long or duplicated set."""
    names = [name.strip() for value in values for name in value.split(",")]
    names = [name for name in names if name]
    lim = limits_of(info)
    if not names:
        raise ValueError("no class names given: send at least one (e.g. 'cat,dog')")
    if len(names) > lim.max_labels:
        raise ValueError(f"{len(names)} labels exceed the limit of {lim.max_labels}")
    long = next((name for name in names if len(name) > lim.max_text_chars), None)
    if long is not None:
        raise ValueError(f"label {long[:40]!r}... is longer than {lim.max_text_chars} characters")
    dupes = sorted({name for name in names if names.count(name) > 1})
    if dupes:
        raise ValueError(f"duplicate labels {dupes}")
    return names


def _within_max_texts(values: list[str], info: ValidationInfo) -> list[str]:
    top = limits_of(info).max_texts
    if len(values) > top:
        raise ValueError(f"{len(values)} texts exceed the batch limit of {top}")
    return values


# An integer in 1..max_k; bools and floats are refused, decimal strings (form fields) accepted.
Count = Annotated[int, Strict(), BeforeValidator(_int_from_string), AfterValidator(_within_max_k)]
# A stripped, non-empty text of at most max_text_chars.
Text = Annotated[str, AfterValidator(_clean_text)]
# A list of at most max_texts such texts.
Texts = Annotated[list[Text], AfterValidator(_within_max_texts)]
# Distinct class names from a list and/or comma-separated strings, at most max_labels.
Labels = Annotated[list[str], BeforeValidator(_listed), AfterValidator(_class_names)]
Target = Literal["image", "caption"]
if TYPE_CHECKING:  # a Literal built at run time is not a static type
    TemplateSet = str
else:
    TemplateSet = Literal[tuple(TEMPLATE_SETS)]
