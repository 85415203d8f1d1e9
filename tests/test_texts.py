"""What the pages say: both languages complete, durations spelled for people, the language picked."""

import re
import string
from pathlib import Path

import pytest

from deviceflow.texts import TEXTS, pick_language, spell_duration


def sentences(lang):
    """(name, text) for every sentence of a language, list items included."""
    for name, value in TEXTS[lang].items():
        for text in value if isinstance(value, list) else [value]:
            if isinstance(text, str):
                yield name, text


def placeholders(text):
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def test_every_text_exists_in_both_languages_with_the_same_placeholders():
    assert TEXTS["fr"].keys() == TEXTS["en"].keys()
    french, english = sorted(sentences("fr")), sorted(sentences("en"))
    assert [name for name, _ in french] == [name for name, _ in english]  # as many list items, too
    for name in TEXTS["fr"]:
        assert {frozenset(placeholders(text)) for key, text in french if key == name} == {
            frozenset(placeholders(text)) for key, text in english if key == name
        }, name


def test_french_punctuation_never_starts_a_line():
    for _, text in sentences("fr"):
        assert not re.search(r" [:;!?]", text), text


@pytest.mark.parametrize(
    "seconds, french, english",
    [
        (300, "5 minutes", "5 minutes"),
        (900, "15 minutes", "15 minutes"),
        (90, "2 minutes", "2 minutes"),  # a wait is rounded up, never understated
        (3600, "1 heure", "1 hour"),
        (86400, "1 jour", "1 day"),
        (3 * 365 * 86400, "3 ans", "3 years"),  # DURATION=P3Y
        (6 * 30 * 86400, "6 mois", "6 months"),  # DURATION=P6M
        (45 * 86400, "45 jours", "45 days"),
        (30, "30 secondes", "30 seconds"),
    ],
)
def test_durations_are_spelled_for_people(seconds, french, english):
    assert spell_duration(seconds, "fr") == french.replace(" ", "\u00a0")
    assert spell_duration(seconds, "en") == english.replace(" ", "\u00a0")


@pytest.mark.parametrize(
    "query, cookie, accept, expected",
    [
        (None, None, None, "fr"),
        (None, None, "en-GB,en;q=0.9", "en"),
        (None, None, "de-DE,en;q=0.5,fr;q=0.8", "fr"),
        (None, "en", "fr-FR", "en"),  # a choice made with the switch is remembered
        ("fr", "en", "en-US", "fr"),
        ("xx", None, "en", "en"),
    ],
)
def test_language_is_the_explicit_choice_then_the_browser_preference(query, cookie, accept, expected):
    assert pick_language(query, cookie, accept) == expected


def test_the_project_stands_alone():
    """Nothing a user reads points outside the repository or at one machine's folders."""
    root = Path(__file__).resolve().parent.parent
    for path in [root / "README.md", root / "openapi.yaml", *root.glob("docs/**/*.md"), *root.glob("addon/*.md")]:
        text = path.read_text(encoding="utf-8")
        assert "../shared" not in text and "/work/" not in text, path
