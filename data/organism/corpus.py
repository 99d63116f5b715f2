"""Training text and evaluation items of the organism's four task families.

Every generator takes a ``random.Random`` and a :class:`~data.organism.world.World` and is
deterministic given them. Text is a list of words (one word = one token).

An :class:`Item` is an evaluation pair: ``prompt`` -> ``answer`` and ``corrupted_prompt`` ->
``corrupted_answer``, of equal length, differing in one word, with different single-word
answers. Within a family every evaluation item has the same length (fixed templates), so a
batch of items is a plain ``(batch, pos)`` tensor and the scored position is always the last.

Held-out split: an induction sequence, an IOI sentence (template, order, names, place, object)
or a reasoning context is *held out* when a stable hash of it falls in bucket 0 of 10;
training text never contains a held-out one, evaluation items are always held out. Recall is
memorisation: its prompts are the world's facts, which training must state (the held-out
split does not apply; what is never in the prompt is the answer's evidence).
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

from data.organism.world import World

FAMILIES = ("induction", "ioi", "recall", "reasoning")
IOI_TEMPLATES = (  # all 14 words: equal-length prompts across templates
    "when {0} and {1} went to the {2} , {3} gave a {4} to",
    "after {0} and {1} went to the {2} , {3} gave a {4} to",
    "while {0} and {1} were at the {2} , {3} handed a {4} to",
    "then {0} and {1} walked into the {2} , {3} threw a {4} to",
    "once {0} and {1} arrived at the {2} , {3} passed a {4} to",
)
RECALL_RELATIONS = {"lives in": "city", "works as": "job"}
INDUCTION_EVAL_LEN, INDUCTION_EVAL_K = 12, 6  # eval: 12 random words, then the first 6 again
REASONING_EVAL_CHAINS = 3
REASONING_COMPLETE_P = 0.6  # training chains that have their place -> city link
HELDOUT_BUCKETS = 10


@dataclass(frozen=True)
class Item:
    """One evaluation pair; prompts are word lists without ``<bos>``."""

    family: str
    prompt: tuple[str, ...]
    answer: str
    corrupted_prompt: tuple[str, ...]
    corrupted_answer: str
    variant: str  # template id / order / relation: lets analyses split results

    def __post_init__(self) -> None:
        if len(self.prompt) != len(self.corrupted_prompt):
            raise ValueError("clean and corrupted prompts must have equal length")
        if self.answer == self.corrupted_answer:
            raise ValueError("clean and corrupted answers must differ")


def is_heldout(words: tuple[str, ...] | list[str], tag: str) -> bool:
    """Stable (process-independent) membership of the held-out evaluation split."""
    digest = hashlib.blake2b(f"{tag}|{' '.join(words)}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") % HELDOUT_BUCKETS == 0


# ----------------------------------------------------------------------------- induction


def _induction_seq(rng: random.Random, world: World, length: int, heldout: bool) -> list[str]:
    while True:
        seq = rng.sample(world.content_words, length)  # distinct words: copying is unambiguous
        if is_heldout(seq, "induction") == heldout:
            return seq


def induction_item(rng: random.Random, world: World) -> Item:
    """``s s[:k]`` -> ``s[k]``; corrupted: ``s[k]`` replaced in the first copy by a new word."""
    seq = _induction_seq(rng, world, INDUCTION_EVAL_LEN, heldout=True)
    k = INDUCTION_EVAL_K
    new = rng.choice([w for w in world.content_words if w not in seq])
    corrupted = seq[:k] + [new] + seq[k + 1 :]
    return Item("induction", tuple(seq + seq[:k]), seq[k], tuple(corrupted + seq[:k]), new,
                variant=f"len{len(seq)}_k{k}")


def induction_text(rng: random.Random, world: World) -> list[str]:
    """A random sequence of 6-24 distinct words, then the same sequence again."""
    seq = _induction_seq(rng, world, rng.randint(6, 24), heldout=False)
    return seq + seq


# ----------------------------------------------------------------------------- ioi


def _ioi_draw(rng: random.Random, world: World, heldout: bool) -> tuple[int, str, list[str]]:
    """(template index, order, [io, s, place, object]) in the requested split."""
    while True:
        t = rng.randrange(len(IOI_TEMPLATES))
        order = rng.choice(("ABBA", "BABA"))
        io, s = rng.sample(world.names, 2)
        fields = [io, s, rng.choice(world.places), rng.choice(world.objects)]
        if is_heldout([str(t), order, *fields], "ioi") == heldout:
            return t, order, fields


def _ioi_words(t: int, order: str, io: str, s: str, place: str, obj: str) -> list[str]:
    first, second = (io, s) if order == "ABBA" else (s, io)
    return IOI_TEMPLATES[t].format(first, second, place, s, obj).split()


def ioi_item(rng: random.Random, world: World) -> Item:
    """IOI sentence -> indirect object; corrupted ("ABC"): a third name replaces the IO."""
    t, order, (io, s, place, obj) = _ioi_draw(rng, world, heldout=True)
    other = rng.choice([n for n in world.names if n not in (io, s)])
    return Item("ioi", tuple(_ioi_words(t, order, io, s, place, obj)), io,
                tuple(_ioi_words(t, order, other, s, place, obj)), other,
                variant=f"t{t}_{order}")


def ioi_text(rng: random.Random, world: World) -> list[str]:
    """One training IOI sentence with its answer and a full stop."""
    t, order, (io, s, place, obj) = _ioi_draw(rng, world, heldout=False)
    return _ioi_words(t, order, io, s, place, obj) + [io, "."]


# ----------------------------------------------------------------------------- recall


def _fact(world: World, relation: str, name: str) -> str:
    return world.city[name] if RECALL_RELATIONS[relation] == "city" else world.job[name]


def recall_item(rng: random.Random, world: World) -> Item:
    """``NAME lives in`` -> city(NAME) (or ``works as`` -> job); corrupted: another person."""
    relation = rng.choice(tuple(RECALL_RELATIONS))
    name = rng.choice(world.names)
    answer = _fact(world, relation, name)
    other = rng.choice([n for n in world.names if _fact(world, relation, n) != answer])
    return Item("recall", (name, *relation.split()), answer, (other, *relation.split()),
                _fact(world, relation, other), variant=RECALL_RELATIONS[relation])


def recall_text(rng: random.Random, world: World) -> list[str]:
    """One memorised fact as a sentence."""
    relation = rng.choice(tuple(RECALL_RELATIONS))
    name = rng.choice(world.names)
    return [name, *relation.split(), _fact(world, relation, name), "."]


# ----------------------------------------------------------------------------- reasoning


@dataclass(frozen=True)
class Chains:
    """``n`` disjoint chains person -> place [-> city], with the facts in shuffled order.

    ``complete[j]`` says whether chain j has its second link (place -> city); evaluation
    chains are always complete, training chains are cut after their first link with
    probability ``1 - REASONING_COMPLETE_P``.
    """

    people: tuple[str, ...]
    places: tuple[str, ...]
    cities: tuple[str, ...]
    facts: tuple[tuple[str, str], ...]  # (subject, location) in context order
    complete: tuple[bool, ...]

    def words(self, swap: tuple[int, int] | None = None) -> list[str]:
        """Context words; ``swap=(j, k)`` rewires person j to place k (the corruption)."""
        out: list[str] = []
        for subj, loc in self.facts:
            if swap is not None and subj == self.people[swap[0]]:
                loc = self.places[swap[1]]
            out += [subj, "is", "in", loc, "."]
        return out

    def end(self, j: int) -> str:
        """Where person j's chain ends: its city, or its place when the chain is cut."""
        return self.cities[j] if self.complete[j] else self.places[j]


def draw_chains(rng: random.Random, world: World, n: int, heldout: bool,
                p_complete: float = 1.0) -> Chains:
    """``n`` chains whose context is (``heldout``) or is not in the held-out split; each
    chain complete with probability ``p_complete``."""
    while True:
        people = tuple(rng.sample(world.names, n))
        places = tuple(rng.sample(world.places, n))
        cities = tuple(rng.sample(world.cities, n))
        # evaluation (p_complete 1) draws nothing here, so its items are those of before
        complete = tuple(rng.random() < p_complete for _ in range(n)) if p_complete < 1 \
            else (True,) * n
        facts = [(p, y) for p, y in zip(people, places)]
        facts += [(y, z) for y, z, c in zip(places, cities, complete) if c]
        rng.shuffle(facts)
        chains = Chains(people, places, cities, tuple(facts), complete)
        if is_heldout(chains.words(), "reasoning") == heldout:
            return chains


def reasoning_item(rng: random.Random, world: World) -> Item:
    """Shuffled facts of 3 chains + ``so X is in`` -> X's city (two hops, read in context).

    Corrupted: X's middle link (its place) is rewired to another chain's place, so the answer
    becomes that chain's city; same length, one word differs.
    """
    n = REASONING_EVAL_CHAINS
    ch = draw_chains(rng, world, n, heldout=True)
    j, k = rng.sample(range(n), 2)
    query = ["so", ch.people[j], "is", "in"]
    return Item("reasoning", tuple(ch.words() + query), ch.cities[j],
                tuple(ch.words(swap=(j, k)) + query), ch.cities[k], variant=f"chains{n}")


def reasoning_text_v1(rng: random.Random, world: World) -> list[str]:
    """The first organism's reasoning rows (``reasoning_rows="v1"``): facts of 1-4 chains, one
    or two two-hop questions and one one-hop (place) question, with answers.

    One-chain contexts (a single city: solvable without hops) teach the format and the
    copying of a city from context early; 2-4 chains force the two hops. The one-hop question
    ("so PLACE is in" -> its city, read from one fact) trains the retrieval step that the
    two-hop question applies twice; it comes last so it never hints at a two-hop answer.
    Measured (issue 20): on these rows the organism learned neither hop in context.
    """
    n = rng.choices((1, 2, 3, 4), weights=(1, 2, 3, 2))[0]
    ch = draw_chains(rng, world, n, heldout=False)
    out = ch.words()
    for j in rng.sample(range(n), min(n, 2) if n < 4 else 1):
        out += ["so", ch.people[j], "is", "in", ch.cities[j], "."]
    j = rng.randrange(n)
    return out + ["so", ch.places[j], "is", "in", ch.cities[j], "."]


def reasoning_text(rng: random.Random, world: World, two_hop: bool = True) -> list[str]:
    """Facts of 1-4 chains, then ``so X is in`` -> where X's chain ends, for every person and
    every place that has a city, in random order (``two_hop=False``: no question on a person
    whose chain is complete, so every question is a one-hop lookup).

    Why this shape (issue 20; measured, see the organism README): with one or two questions
    per context the organism never learned even the one-hop lookup in 8000 steps. A question
    on every subject gives each context up to eight supervised lookups. Chains cut after their
    first link make "so X is in" a one-hop question (answer: the place), so the first hop can
    be trained on its own (the ``lookup`` rows of the curriculum), and the two-hop answer is
    "follow X's chain to its end". One-chain contexts (solvable without reading the facts)
    teach the format. No question gives away another's answer: a place question only
    restates a fact that is already in context.
    """
    n = rng.choices((1, 2, 3, 4), weights=(1, 2, 3, 3))[0]
    ch = draw_chains(rng, world, n, heldout=False, p_complete=REASONING_COMPLETE_P)
    queries = [(ch.people[j], ch.end(j)) for j in range(n) if two_hop or not ch.complete[j]]
    queries += [(ch.places[j], ch.cities[j]) for j in range(n) if ch.complete[j]]
    rng.shuffle(queries)
    out = ch.words()
    for subject, answer in queries:
        out += ["so", subject, "is", "in", answer, "."]
    return out


def lookup_text(rng: random.Random, world: World) -> list[str]:
    """A reasoning context with one-hop questions only (the curriculum's ``lookup`` rows)."""
    return reasoning_text(rng, world, two_hop=False)


ITEM_MAKERS = {"induction": induction_item, "ioi": ioi_item, "recall": recall_item,
               "reasoning": reasoning_item}
TEXT_MAKERS = {"induction": induction_text, "ioi": ioi_text, "recall": recall_text,
               "reasoning": reasoning_text, "lookup": lookup_text}
# what training rows can be: the task families, then the curriculum's one-hop rows (last, so
# a mix without them draws exactly the rows it drew before they existed)
TRAIN_FAMILIES = (*FAMILIES, "lookup")
# how reasoning rows are written (TrainConfig.reasoning_rows): "dense" asks about every subject
REASONING_ROWS = {"v1": reasoning_text_v1, "dense": reasoning_text}
# the longest training row (words, without <bos>) of each way: 4 chains and their questions
LONGEST_ROW = {"v1": 52, "dense": 88}
PACKED = ("ioi", "recall")  # short texts packed several to a training row


def make_items(family: str, n: int, seed: int, world: World) -> list[Item]:
    """``n`` held-out evaluation items of ``family``, deterministic in ``seed``."""
    if family not in ITEM_MAKERS:
        raise ValueError(f"unknown task family {family!r}; choose from {FAMILIES}")
    rng = random.Random(f"items-{family}-{seed}")
    return [ITEM_MAKERS[family](rng, world) for _ in range(n)]


def training_row(rng: random.Random, world: World, family: str, max_words: int,
                 reasoning_rows: str = "dense") -> list[str]:
    """One training row (without ``<bos>``): one text, or several short ones packed.

    ``reasoning_rows`` names the writer of ``reasoning`` rows (:data:`REASONING_ROWS`).
    """
    if reasoning_rows not in REASONING_ROWS:
        raise ValueError(f"reasoning_rows must be one of {sorted(REASONING_ROWS)}, got "
                         f"{reasoning_rows!r}")
    make = REASONING_ROWS[reasoning_rows] if family == "reasoning" else TEXT_MAKERS[family]
    row = make(rng, world)
    while family in PACKED:
        nxt = make(rng, world)
        if len(row) + len(nxt) > max_words:
            break
        row += nxt
    if len(row) > max_words:
        raise ValueError(f"a {family} text of {len(row)} words exceeds {max_words}")
    return row
