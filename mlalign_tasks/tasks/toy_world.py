"""A toy world in which question alignment can be watched on a CPU: toy English and synthetic languages.

Toy English is a small grammar of reviews, arithmetic word problems and everyday sentences (lower-case
words and punctuation separated by spaces). Every synthetic language (``languages.TOY_LANGUAGES``) maps
each English word to a pseudo-word of its own: the languages of one family take a share (``overlap``)
of their words from the family's common stock, like cognates; they may write in another script, write
numbers with native digits, and put each sentence's words in reverse order. Names are transliterated.
Everything is a function of the `World` (seed and knobs), so tasks, training data and the pretraining
corpus are reproducible and parallel: item ``i`` of every language translates English item ``i``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import cached_property

from mlalign_tasks.errors import MlalignError
from mlalign_tasks.tasks.languages import TOY_LANGUAGES, check_lang

NAMES_HE = ("tom", "ben", "sam", "max")
NAMES_SHE = ("ana", "mia", "eva", "lily")
NOUNS = ("soup", "film", "book", "phone", "hotel", "game", "song", "chair", "lamp", "bike", "cake", "shirt")
POSITIVE = ("good", "great", "nice", "lovely", "superb", "fun", "warm", "clean", "fresh", "sweet")
NEGATIVE = ("bad", "poor", "awful", "dull", "ugly", "slow", "dirty", "stale", "sour", "weak")
NEUTRAL = ("big", "small", "red", "new", "old", "blue", "long", "short")
ADVERBS = ("very", "really", "quite", "so")
VERBS = ("bought", "saw", "read", "used", "tried", "got", "found", "made")
THINGS = ("apples", "eggs", "coins", "cards", "shells", "stamps")
FUNCTION_WORDS = (
    "the", "a", "this", "my", "was", "is", "and", "it", "i", "we", "thinks", "he", "she", "has", "have",
    "buys", "more", "gives", "away", "how", "many", "does", "now", "then", "finds", "loses", "today", "at",
    "home", "with", "friends", "likes", "to", "play", "so", "answer", "positive", "negative",
)  # fmt: skip
WORDS = tuple(dict.fromkeys((*NOUNS, *POSITIVE, *NEGATIVE, *NEUTRAL, *ADVERBS, *VERBS, *THINGS, *FUNCTION_WORDS)))
NAMES = (*NAMES_HE, *NAMES_SHE)
SENTENCE_ENDS = (".", "?")

# Latin letters -> letters of another script (a toy transliteration, one letter for one letter).
_LATIN = "abcdefghijklmnopqrstuvwxyz"
SCRIPTS: dict[str, dict[str, str]] = {
    "latin": {},
    "cyrillic": dict(zip(_LATIN, "абцдефгхийклмнопярстувшхыз", strict=True)),
    "greek": dict(zip(_LATIN, "αβψδεφγηιξκλμνοπθρστυωςχυζ", strict=True)),
}
DIGITS: dict[str, str] = {"ascii": "0123456789", "devanagari": "०१२३४५६७८९", "arabic": "٠١٢٣٤٥٦٧٨٩"}
# Consonants and vowels of each family's pseudo-words.
FAMILY_SOUNDS: dict[str, tuple[str, str]] = {
    "alvic": ("bdfgklmnprstvz", "aeiou"),
    "borish": ("bdgklmnprstvz", "aeiouy"),
    "corian": ("dfghklmnpqrstx", "aeio"),
}


@dataclass(frozen=True)
class World:
    """The knobs that make a toy world: the seed of every lexicon and the share of a family's common words."""

    seed: int = 0
    overlap: float = 0.5  # chance that a language uses its family's word for an English word (else its own)
    cognates: float = 0.0  # chance that a family's word is the English word itself (in the family's script)

    def __post_init__(self) -> None:
        for knob in ("overlap", "cognates"):
            if not 0.0 <= getattr(self, knob) <= 1.0:
                raise MlalignError(f"toy world {knob} {getattr(self, knob)} must be between 0 and 1")

    @cached_property
    def lexicons(self) -> dict[str, dict[str, str]]:
        """Language code -> {English word: its word in that language} for every toy language."""
        return {code: _lexicon(code, self.overlap, self.cognates, self.seed) for code in TOY_LANGUAGES}

    def translate(self, text: str, code: str, keep: frozenset[str] = frozenset()) -> str:
        """Toy English `text` in language `code`; words in `keep` stay English (code-switching)."""
        if check_lang(code, ("en", *TOY_LANGUAGES), what="toy language") == "en":
            return text
        lang = TOY_LANGUAGES[code]
        lexicon, digits, letters = self.lexicons[code], DIGITS[lang.digits], SCRIPTS[lang.script]
        sentences: list[str] = []
        for words in _sentences(text):
            out = []
            for word in words:
                if word in keep:
                    out.append(word)
                elif word in lexicon:
                    out.append(lexicon[word])
                elif word in NAMES:
                    out.append("".join(letters.get(c, c) for c in word))
                elif word.isdigit():
                    out.append("".join(digits[int(d)] for d in word))
                else:
                    out.append(word)
            if lang.reverse and out[-1] in SENTENCE_ENDS:
                out = [*reversed(out[:-1]), out[-1]]
            sentences.append(" ".join(out))
        return " ".join(sentences)

    def word(self, english: str, code: str) -> str:
        """One English word in language `code`."""
        return english if code == "en" else self.lexicons[code][english]


def _pseudo_word(rng: random.Random, sounds: tuple[str, str]) -> str:
    consonants, vowels = sounds
    syllables = rng.choice((1, 2, 2, 3))
    return "".join(rng.choice(consonants) + rng.choice(vowels) for _ in range(syllables)) + rng.choice("nrs ").strip()


def _stock(rng: random.Random, sounds: tuple[str, str], taken: set[str]) -> dict[str, str]:
    """A distinct pseudo-word (not in `taken`, which grows) for every English word."""
    stock = {}
    for english in WORDS:
        word = _pseudo_word(rng, sounds)
        while word in taken:
            word = _pseudo_word(rng, sounds)
        taken.add(word)
        stock[english] = word
    return stock


def _lexicon(code: str, overlap: float, cognates: float, seed: int) -> dict[str, str]:
    lang = TOY_LANGUAGES[code]
    sounds = FAMILY_SOUNDS[lang.family]
    taken = set(WORDS) | set(NAMES)
    family = _stock(random.Random(f"{seed}:family:{lang.family}"), sounds, taken)
    if cognates:
        cognate = random.Random(f"{seed}:cognates:{lang.family}")
        family = {english: english if cognate.random() < cognates else word for english, word in family.items()}
    own = _stock(random.Random(f"{seed}:language:{code}"), sounds, taken)
    share = random.Random(f"{seed}:share:{code}")
    letters = SCRIPTS[lang.script]
    return {
        english: "".join(letters.get(c, c) for c in (family[english] if share.random() < overlap else own[english]))
        for english in WORDS
    }


def _sentences(text: str) -> list[list[str]]:
    sentences: list[list[str]] = [[]]
    for word in text.split():
        sentences[-1].append(word)
        if word in SENTENCE_ENDS:
            sentences.append([])
    return [s for s in sentences if s]


# ----------------------------------------------------------------------------- toy English


def _person(rng: random.Random) -> tuple[str, str]:
    return (rng.choice(NAMES_HE), "he") if rng.random() < 0.5 else (rng.choice(NAMES_SHE), "she")


def review(rng: random.Random) -> tuple[str, int]:
    """A review of one to three sentences and its label (0 positive, 1 negative); every judging word agrees."""
    label = rng.randrange(2)
    judging = POSITIVE if label == 0 else NEGATIVE
    count = rng.choice((1, 2, 2, 3))
    judged = rng.randrange(count)
    sentences = []
    for k in range(count):
        noun = rng.choice(NOUNS)
        if k == judged or rng.random() < 0.5:
            adj = f"{rng.choice(ADVERBS)} {rng.choice(judging)}" if rng.random() < 0.3 else rng.choice(judging)
            sentences.append(
                rng.choice(
                    (
                        f"the {noun} was {adj} .",
                        f"i {rng.choice(VERBS)} the {noun} and it was {adj} .",
                        f"{_person(rng)[0]} thinks the {noun} is {adj} .",
                        f"this {noun} is {adj} .",
                    )
                )
            )
        else:
            sentences.append(
                rng.choice(
                    (
                        f"we {rng.choice(VERBS)} a {rng.choice(NEUTRAL)} {noun} .",
                        f"i {rng.choice(VERBS)} it at home with friends .",
                        f"my {noun} is {rng.choice(NEUTRAL)} .",
                    )
                )
            )
    return " ".join(sentences), label


def word_problem(rng: random.Random) -> tuple[str, str, int]:
    """An arithmetic word problem: (question, worked English solution ending in the answer, answer)."""
    name, pronoun = _person(rng)
    thing = rng.choice(THINGS)
    a = rng.randint(2, 9)
    if rng.random() < 0.5:
        b, verb, op = rng.randint(1, 9), rng.choice(("buys", "finds")), "+"
        story = f"{name} has {a} {thing} . {pronoun} {verb} {b} more {thing} ."
    else:
        b, verb, op = rng.randint(1, a - 1), rng.choice(("gives away", "loses")), "-"
        story = f"{name} has {a} {thing} . {pronoun} {verb} {b} {thing} ."
    result = a + b if op == "+" else a - b
    question = f"{story} how many {thing} does {name} have now ?"
    solution = f"{story} so {name} has {a} {op} {b} = {result} {thing} . the answer is {result} ."
    return question, solution, result


def sentence(rng: random.Random) -> str:
    """An everyday sentence (no task)."""
    name, pronoun = _person(rng)
    noun = rng.choice(NOUNS)
    return rng.choice(
        (
            f"{name} {rng.choice(VERBS)} a {rng.choice(NEUTRAL)} {noun} today .",
            f"{name} likes to play with friends . {pronoun} has a {rng.choice(NEUTRAL)} {noun} .",
            f"then {pronoun} {rng.choice(VERBS)} the {noun} at home .",
            f"{name} has {rng.randint(2, 9)} {rng.choice(THINGS)} .",
        )
    )


def describe() -> str:
    """One paragraph on the toy world's languages, from the language table."""
    families: dict[str, list] = {}
    for lang in TOY_LANGUAGES.values():
        families.setdefault(lang.family, []).append(lang)
    parts = []
    for family, langs in families.items():
        traits = []
        for lang in langs:
            extra = [f"{lang.digits} digits"] if lang.digits != "ascii" else []
            traits.append(f"{lang.code} {lang.name}" + (f" ({', '.join(extra)})" if extra else ""))
        first = langs[0]
        style = f"{first.script} script" + (", words of each sentence reversed" if first.reverse else "")
        parts.append(f"{family.capitalize()} ({style}): {', '.join(traits)}")
    return (
        "The toy world: a small Llama model pretrained from scratch by mlalign on generated text, English-centric: "
        "toy English with task answers, and seven synthetic languages (pseudo-words for every English word; the "
        "languages of a family share part of their words) without any task answer or translation. "
        + "; ".join(parts)
        + "."
    )
