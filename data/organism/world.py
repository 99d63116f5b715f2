"""The organism's world: a fixed word-level vocabulary and a seeded set of world facts.

Everything here is pure Python and deterministic. The *lexicon* (which words exist) is fixed;
the *world* (who lives where, who works as what) is drawn from ``world_seed``.

Word classes (every word is one token):

- ``names``   people: invented two-syllable names (``Bako``, ``Lemi`` ...); recall subjects,
              IOI names and the first link of reasoning chains.
- ``cities``  where people live (recall) and the last link of reasoning chains.
- ``jobs``    what people work as (recall).
- ``places``  buildings: the IOI ``PLACE`` and the middle link of reasoning chains.
- ``objects`` things given in IOI sentences.
- ``FUNCTION_WORDS`` the template words and punctuation.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import cached_property

PAD, BOS, UNK = "<pad>", "<bos>", "<unk>"
SPECIAL_TOKENS = (PAD, BOS, UNK)  # ids 0, 1, 2 in this order
FUNCTION_WORDS = (
    ".", ",", "when", "after", "while", "then", "once", "and", "went", "to", "the", "were",
    "at", "walked", "into", "arrived", "gave", "handed", "threw", "passed", "a", "lives", "in",
    "works", "as", "is", "so",
)
CITIES = (
    "Paris", "Rome", "Oslo", "Lima", "Cairo", "Delhi", "Tokyo", "Berlin", "Madrid", "Vienna",
    "Dublin", "Prague", "Athens", "Lisbon", "Warsaw", "Seoul", "Quito", "Dakar", "Hanoi",
    "Havana", "Nairobi", "Sydney", "Boston", "Denver", "Austin", "Milan", "Munich", "Geneva",
    "Bergen", "Porto",
)
JOBS = (
    "baker", "doctor", "farmer", "pilot", "teacher", "painter", "writer", "singer", "nurse",
    "lawyer", "chef", "tailor", "plumber", "dentist", "miner", "sailor", "judge", "poet",
    "driver", "guard",
)
PLACES = (
    "store", "school", "park", "garden", "office", "library", "market", "museum", "station",
    "hospital", "bakery", "church", "castle", "harbor", "theater", "stadium", "hotel", "bank",
    "kitchen", "cinema", "farm", "beach", "temple", "factory",
)
OBJECTS = (
    "ball", "book", "key", "ring", "cup", "hat", "pen", "coin", "lamp", "bag", "box", "map",
    "knife", "shoe", "clock", "bell", "flute", "kite", "rope", "shell", "comb", "vase", "drum",
    "plate",
)
_ONSETS = "b d f g h k l m n p r s t v z".split()
_VOWELS = "a e i o u".split()


def make_names(n: int) -> tuple[str, ...]:
    """``n`` distinct invented names (CV-CV, capitalised), the same for every world."""
    syllables = [c + v for c in _ONSETS for v in _VOWELS]  # 75 syllables
    pairs = [a + b for a in syllables for b in syllables if a != b]
    random.Random(0).shuffle(pairs)  # fixed: the lexicon does not depend on the world seed
    if n > len(pairs):
        raise ValueError(f"at most {len(pairs)} names can be made, asked for {n}")
    return tuple(sorted(p.capitalize() for p in pairs[:n]))


@dataclass(frozen=True)
class WorldConfig:
    """What the world holds; the defaults are the shipped organism's world."""

    seed: int = 0  # draws the facts (city and job of each person)
    n_people: int = 300  # people with memorised facts (recall needs hundreds)

    def __post_init__(self) -> None:
        if not 8 <= self.n_people <= 600:
            raise ValueError(f"n_people must be in [8, 600], got {self.n_people}")


@dataclass(frozen=True)
class World:
    """A lexicon plus the fixed facts ``city[name]`` and ``job[name]``."""

    config: WorldConfig

    @cached_property
    def names(self) -> tuple[str, ...]:
        return make_names(self.config.n_people)

    cities = CITIES
    jobs = JOBS
    places = PLACES
    objects = OBJECTS

    @cached_property
    def city(self) -> dict[str, str]:
        """Memorised fact "NAME lives in CITY" (drawn once from the world seed)."""
        rng = random.Random(f"city-{self.config.seed}")
        return {n: rng.choice(CITIES) for n in self.names}

    @cached_property
    def job(self) -> dict[str, str]:
        """Memorised fact "NAME works as JOB"."""
        rng = random.Random(f"job-{self.config.seed}")
        return {n: rng.choice(JOBS) for n in self.names}

    @cached_property
    def content_words(self) -> tuple[str, ...]:
        """Every non-function word: the pool the induction sequences are drawn from."""
        return self.names + CITIES + JOBS + PLACES + OBJECTS

    @cached_property
    def vocab(self) -> tuple[str, ...]:
        """All tokens, special tokens first (``<pad>`` = 0, ``<bos>`` = 1, ``<unk>`` = 2)."""
        words = SPECIAL_TOKENS + FUNCTION_WORDS + self.content_words
        if len(set(words)) != len(words):
            raise ValueError("the lexicon has duplicate words")
        return words

    @cached_property
    def word_ids(self) -> dict[str, int]:
        """Each word's token id (its index in :attr:`vocab`)."""
        return {w: i for i, w in enumerate(self.vocab)}


def make_world(seed: int = 0, n_people: int = 300) -> World:
    """The world of ``seed`` with ``n_people`` people."""
    return World(WorldConfig(seed=seed, n_people=n_people))
