"""The one model configuration of every request input (JSON bodies and query parameters),
and the value types that make the schema the exact contract.

Pydantic's default (lax) mode takes ``false`` for a number and ``"5"`` for an integer; the
OpenAPI document says neither. Here a value is accepted exactly when the published schema
accepts it:

- a number (``Number``) is a JSON number, integers included; never a boolean or a string;
- an integer (``Integer``) is a JSON number without a fractional part (``3`` or ``3.0``, as
  JSON Schema defines it); never a boolean or a string;
- query parameters arrive as text, so ``QueryNumber`` / ``QueryInteger`` accept exactly the
  JSON number grammar (``5``, ``-1.5e3``; not ``true``, ``0x10``, ``1_000`` or `` 5``);
- text is valid Unicode (pydantic refuses unpaired surrogates in constrained strings, and
  every text field here has a maximum length); ``NON_BLANK`` text must contain a character
  other than whitespace; ``TRIM`` trims surrounding whitespace *after* the length check, so
  the schema's ``maxLength`` holds for the text as sent;
- unknown fields and query parameters are rejected, and so are NaN and infinities.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

STRICT = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False)

# Every character any of the engines involved calls whitespace: Python's str.isspace, Rust's
# (pydantic's) White_Space and ECMA-262's \s (which JSON Schema patterns use). Spelled out,
# because the three disagree on \x1c-\x1f, \x85 and \ufeff.
BLANK = ("\t\n\v\f\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
         "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000\ufeff")
NON_BLANK_PATTERN = (r"[^\t\n\v\f\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f"
                     r"\u205f\u3000\ufeff]")

_JSON_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")


class StrictModel(BaseModel):
    """Base of every request body and every query parameter model."""

    model_config = STRICT


def _integral(value: Any) -> Any:
    """JSON Schema's integer: 3.0 is one, 3.5 is not (left for the strict check to refuse)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _query_number(value: Any) -> Any:
    """Query text in the JSON number grammar becomes a number; anything else stays text and
    fails the strict type check with the usual message."""
    if isinstance(value, str) and _JSON_NUMBER.fullmatch(value):
        return float(value)
    return value


def _query_integer(value: Any) -> Any:
    if isinstance(value, str) and _JSON_NUMBER.fullmatch(value):
        if re.fullmatch(r"-?[0-9]+", value):
            return int(value)
        return _integral(float(value))
    return value


def _trim(text: str) -> str:
    return text.strip(BLANK)


Number = Annotated[float, Field(allow_inf_nan=False)]
Integer = Annotated[int, BeforeValidator(_integral)]


OneToFive = Annotated[int, Field(ge=1, le=5), BeforeValidator(_integral)]
"""``Integer`` from 1 to 5 whose bounds stay in the schema also as ``OneToFive | None``
(bounds given after the validator, or on the union's ``Field``, come out as the
non-standard keys ``ge``/``le``)."""

QueryNumber = Annotated[float, Field(allow_inf_nan=False), BeforeValidator(_query_number)]
QueryInteger = Annotated[int, BeforeValidator(_query_integer)]

NO_NUL_PATTERN = r"^[^\x00]*$"
NO_NUL = Field(pattern=NO_NUL_PATTERN)
"""Text without U+0000: PostgreSQL cannot store it in text columns (SQLite can), so the API
refuses it with a 422 and the schema says so, instead of a 500 from the database."""
NON_BLANK = Field(min_length=1, pattern=r"^[^\x00]*" + NON_BLANK_PATTERN.replace("[^", "[^\\x00", 1)
                  + r"[^\x00]*$")
"""Text must contain a character other than whitespace, and no U+0000 (see ``NO_NUL``)."""
TRIM = AfterValidator(_trim)
"""Trims surrounding whitespace; put it after the length constraint, which then holds for the
text as sent (``Annotated[str, Field(max_length=100), NON_BLANK, TRIM]``)."""
