"""What participants read and write: the instructions with their comprehension questions, and the normalising of
the free-text answers (Part 2: "describe the change in 1-4 words").

The instructions and the comprehension questions sit together here so that every question asks about something the
instructions say (the check tests understanding of the text, not guessing); the answer a question expects stays on
the server (the app sends the options only, in a per-participant order).

One function decides what a description *is*, and every writer (the app, the simulated participants, the database
layer) and the analysis use it, so the word count a participant is held to is the word count the analysis sees.

:func:`normalize_text`, in this order:

1. Unicode NFKC (full-width and compatibility forms become their plain letters, ``ﬁ`` -> ``fi``).
2. Invisible characters are decided one by one:

   * characters that by definition do *not* break a word are removed: soft hyphen (U+00AD), zero-width non-joiner
     and joiner (U+200C/D), word joiner (U+2060), zero-width no-break space / BOM (U+FEFF), combining grapheme
     joiner (U+034F) and the blank "filler" letters (U+115F, U+1160, U+3164, U+FFA0, U+2800);
   * every other format character (Unicode category Cf: zero-width space U+200B, the bidirectional controls such as
     the right-to-left override U+202E, ...), every control character (Cc: NUL, tab, CR, LF, ...) and every other
     separator (Z*: no-break space, line separator, ...) becomes a space. A zero-width space between two words is a
     word break, so ``"a\\u200bb"`` is two words, never one word that the analysis later splits in two;
   * private-use, surrogate and unassigned code points (Co, Cs, Cn) are removed.
3. Runs of whitespace collapse to one space; leading and trailing spaces go.

Words (:func:`words`) are then the maximal runs of letters, digits, combining marks and the word-internal ``'`` / ``’``
/ ``-`` that contain at least one letter or digit; any other character (punctuation, symbols, spaces) separates them,
so ``"a,b,c,d,e"`` is five words. A description must contain at least one letter: ``=1+1`` or ``!!!`` is refused.

The database keeps the raw text as typed next to the normalised one; only the normalised text is analysed.
No third-party imports: the participant app calls this on every submit.
"""

from __future__ import annotations

import random
import re
import unicodedata
from dataclasses import dataclass

__all__ = ["COMPREHENSION", "CONSENT_TASK", "INSTRUCTIONS", "MAX_WORDS", "DescriptionError", "Question",
           "check_description", "comprehension_mistakes", "normalize_text", "question_options", "task_key", "words"]

MAX_WORDS = 4
"""Part 2: a description has 1 to MAX_WORDS words (the instructions, the check question and the app's validation)."""

INSTRUCTIONS = {
    "coherence": (
        "On every screen you see four animated images. The two on the left, marked **Reference**, show the same kind "
        "of change applied to two different pictures.\n\n"
        "The two on the right, marked **A** and **B**, show a change on two other pictures. **Pick the option (A or B) "
        "that shows the same kind of change as the references**, then press Submit.\n\n"
        "The first screen is a practice round and tells you how you did."
    ),
    "description": (
        "On every screen you see four animated images. All four show the same kind of change.\n\n"
        f"**Describe the single most prominent change in 1 to {MAX_WORDS} words** (for example: *hair gets darker*), "
        "then press Submit."
    ),
    "forward": (
        "The study has two phases.\n\n"
        "**Learning phase.** A computer program (a *classifier*) sorts pictures into classes. You first see a few "
        "animated images; each shows a change that pushes the classifier toward the class written above it. Study "
        "them: they show what the classifier pays attention to.\n\n"
        "**Test phase.** Then you see new pictures one at a time, without any animation. For each, **predict which "
        "class the classifier will say** by pressing the button of that class. We ask for the classifier's answer, "
        "not for what you think the picture really is. You do not learn whether you were right."
    ),
    # Part 3 for a control group that sees no attributes: the same test phase, no learning phase
    "forward_test_only": (
        "A computer program (a *classifier*) sorts pictures into classes. You see pictures one at a time, without "
        "any animation. For each, **predict which class the classifier will say** by pressing the button of that "
        "class. We ask for the classifier's answer, not for what you think the picture really is. You do not learn "
        "whether you were right."
    ),
}

CONSENT_TASK = {
    "coherence": "You will see short animated images and pick, on each screen, which of two options changes in "
                 "the same way as two examples.",
    "description": "You will see short animated images and describe in a few words the change they show.",
    "forward": "You will see pictures and predict how a computer program sorts them; some participants first study "
               "a few short animated images.",
}
"""What the consent page says the task is, per part (the group of a Part 3 participant is drawn only at consent)."""


def task_key(part: str, learning_screens: bool = True) -> str:
    """The key of :data:`INSTRUCTIONS` and :data:`COMPREHENSION` for a participant of ``part``: a Part 3 participant
    without learning screens (a control group that sees no attributes) reads about the test phase only."""
    return "forward_test_only" if part == "forward" and not learning_screens else part


@dataclass(frozen=True)
class Question:
    """A multiple-choice question about the instructions: ``expected`` is the one answer the instructions support."""

    question_id: str
    prompt: str
    expected: str
    others: tuple[str, ...]


COMPREHENSION: dict[str, tuple[Question, ...]] = {
    "coherence": (
        Question("compare", "What do you compare on each screen?",
                 "Which option, A or B, shows the same kind of change as the two references",
                 ("Which of the four images is the most colourful", "Whether the two references show the same person")),
        Question("references", "What do the two images marked Reference show?",
                 "The same kind of change, on two different pictures",
                 ("Two changes that have nothing in common", "The pictures before and after the study")),
        Question("practice", "What is the first screen?",
                 "A practice round that tells you how you did",
                 ("The most important screen of the study", "A screen without a question")),
    ),
    "description": (
        Question("words", "How many words should each description have?",
                 f"1 to {MAX_WORDS} words", ("At least 10 words", "Two full sentences")),
        Question("describe", "What should you describe?",
                 "The single most prominent change that the four images show",
                 ("Everything you can see in the first image", "Which of the four images you like best")),
        Question("same", "What do the four images on a screen show?",
                 "The same kind of change", ("Four unrelated changes", "Four photos taken at different times")),
    ),
    "forward": (
        Question("predict", "In the test phase, what do you answer for each picture?",
                 "Which class the classifier will say for it",
                 ("Which class the picture really belongs to", "How much you like the picture")),
        Question("learning", "What does each animated image of the learning phase show?",
                 "A change that pushes the classifier toward the class written above it",
                 ("The same picture taken at different times", "A picture the classifier cannot sort")),
        Question("feedback", "Do you learn during the test phase whether your answers were right?",
                 "No, the test phase gives no feedback",
                 ("Yes, after every picture", "Yes, after every fifth picture")),
    ),
}
COMPREHENSION["forward_test_only"] = (
    COMPREHENSION["forward"][0],
    Question("pictures", "What do you see on each screen?", "One picture, without any animation",
             ("Four animated images", "A picture with the classifier's answer written under it")),
    COMPREHENSION["forward"][2],
)


def question_options(question: Question, seed: int) -> list[str]:
    """The options of ``question`` in an order fixed by ``seed`` (the participant's), so the expected one is not
    always first and a rerun of the page keeps the order."""
    options = [question.expected, *question.others]
    random.Random(f"{seed}:{question.question_id}").shuffle(options)
    return options


def comprehension_mistakes(part: str, answers: dict[str, str | None]) -> list[str]:
    """The ids of the questions of ``part`` (a :func:`task_key`) whose answer (``answers[question_id]``; None:
    unanswered) is not the expected one; empty when every answer is."""
    if part not in COMPREHENSION:
        raise ValueError(f"part must be one of {sorted(COMPREHENSION)}, got {part!r}")
    return [q.question_id for q in COMPREHENSION[part] if answers.get(q.question_id) != q.expected]

_REMOVED = frozenset("\u00ad\u200c\u200d\u2060\ufeff\u034f\u115f\u1160\u3164\uffa0\u2800")
_WORD_PUNCT = frozenset("'\u2019-")
_SPACES = re.compile(r"\s+")


class DescriptionError(ValueError):
    """A description the participant must rewrite; the message is meant for the participant."""


def normalize_text(raw: str | None) -> str:
    """``raw`` after NFKC, with invisible, format and control characters removed or turned into word breaks, and
    whitespace collapsed (see the module docstring); ``""`` for None."""
    if not raw:
        return ""
    out = []
    for char in unicodedata.normalize("NFKC", str(raw)):
        if char in _REMOVED:
            continue
        category = unicodedata.category(char)
        if category in ("Co", "Cs", "Cn"):
            continue
        out.append(" " if category in ("Cf", "Cc") or category[0] == "Z" else char)
    return _SPACES.sub(" ", "".join(out)).strip()


def _is_word_char(char: str) -> bool:
    return unicodedata.category(char)[0] in "LNM" or char in _WORD_PUNCT


def words(text: str | None) -> list[str]:
    """The words of an already normalised text: runs of letters, digits, marks and ``'``/``-`` that hold at least one
    letter or digit."""
    found, current = [], []
    for char in (text or "") + " ":
        if _is_word_char(char):
            current.append(char)
            continue
        if current:
            token = "".join(current)
            if any(unicodedata.category(c)[0] in "LN" for c in token):
                found.append(token)
            current = []
    return found


def check_description(raw: str | None, max_words: int, max_chars: int) -> str:
    """The normalised description, or :class:`DescriptionError` with a message for the participant when the text
    is too long, empty after normalising, has no letter, or does not have 1 to ``max_words`` words."""
    if not isinstance(raw, str):
        raise DescriptionError(f"Please describe the change in 1 to {max_words} words.")
    if len(raw) > max_chars:
        raise DescriptionError(f"Please describe the change in 1 to {max_words} words "
                               f"(at most {max_chars} characters).")
    norm = normalize_text(raw)
    if len(norm) > max_chars:  # NFKC can expand a character into many
        raise DescriptionError(f"Please describe the change in 1 to {max_words} words "
                               f"(at most {max_chars} characters).")
    if not norm or not any(unicodedata.category(c)[0] == "L" for c in norm):
        raise DescriptionError(f"Please describe the change in words (1 to {max_words} words, using letters).")
    n = len(words(norm))
    if not 1 <= n <= max_words:
        raise DescriptionError(f"Please describe the change in 1 to {max_words} words (you wrote {n}).")
    return norm
