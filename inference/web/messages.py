"""The pages' words: one JSON catalogue per language (`messages/en.json`, `messages/zh.json`,
the same keys in both), and the page language a request asks for."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Literal, get_args

from fastapi import Request

Lang = Literal["en", "zh"]
LANGS: tuple[Lang, ...] = get_args(Lang)
LANG_COOKIE = "defectlens_lang"
CATALOGUE_DIR = Path(__file__).parent / "messages"


class MissingMessage(KeyError):
    """A page asked for a word its catalogue lacks (a bug: tests render every page)."""


@cache
def catalogue(lang: Lang) -> dict[str, str]:
    """Every message of `lang`, by key."""
    words: dict[str, str] = json.loads((CATALOGUE_DIR / f"{lang}.json").read_text("utf-8"))
    return words


def message(lang: Lang, key: str, **values: object) -> str:
    """The message `key` in `lang`, with `{name}` fields filled from `values`."""
    try:
        text = catalogue(lang)[key]
    except KeyError:
        raise MissingMessage(f"message {key!r} is not in messages/{lang}.json") from None
    return text.format(**values) if values else text


def page_lang(request: Request) -> Lang:
    """`?lang=` if given, else the language cookie, else the browser's first choice of
    Chinese or English (default English)."""
    for asked in (request.query_params.get("lang"), request.cookies.get(LANG_COOKIE)):
        for lang in LANGS:
            if asked == lang:
                return lang
    accepted = request.headers.get("accept-language", "").lower()
    return "zh" if accepted.startswith("zh") else "en"
