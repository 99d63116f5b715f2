"""Hand-written words, templates and facts of the real-text tasks (:mod:`data.text_tasks`).

Why a separate file: the lists are data, reviewed by reading, and the single-token checks in
``tests/data/test_text_tasks.py`` run over exactly these. Every name, place, object, city,
country and capital is meant to be ONE token with its leading space under SmolLM2's tokenizer
(and every IOI template to tokenize to the same length), so that clean and corrupted prompts
align token by token and every task has one fixed prompt length.
"""

from __future__ import annotations

# ----------------------------------------------------------------------------- ioi

# Common English first names (both genders), as in Wang et al. 2022's name list.
NAMES: tuple[str, ...] = (
    "Mary", "John", "Tom", "James", "David", "Sarah", "Michael", "Paul", "Mark", "Anna",
    "Emma", "Alice", "Bob", "Kate", "Jack", "Lisa", "Daniel", "Laura", "Peter", "George",
    "Steven", "Susan", "Robert", "Linda", "Richard", "Karen", "Thomas", "Nancy", "Charles",
    "Helen", "Chris", "Amy", "Ryan", "Jessica", "Andrew", "Emily", "Kevin", "Rachel", "Jason",
    "Rose", "Adam", "Grace", "Henry", "Lucy", "Sam", "Jane", "Anne", "Ben", "Max", "Eric",
    "Dan", "Tim", "Joe", "Mike", "Luke", "Sophie", "Jennifer", "William", "Edward", "Frank",
)
# "the PLACE"; "a OBJECT" (consonant-initial, so the article is always "a").
PLACES: tuple[str, ...] = (
    "store", "park", "school", "hospital", "restaurant", "office", "station", "house",
    "garden", "beach", "church", "market", "library", "bank", "shop", "kitchen", "mall", "farm",
)
OBJECTS: tuple[str, ...] = (
    "drink", "ring", "kiss", "bone", "basketball", "computer", "necklace", "snack", "book",
    "ball", "gift", "letter", "pen", "cake", "flower", "phone", "bag", "hat", "key", "toy",
)
# Wang et al. 2022's IOI templates, the six of them that tokenize to 15 tokens with
# single-token names, place and object. {A} and {B} are the indirect object (IO, the answer)
# and the subject (S1) in either order: ABBA puts IO first, BABA puts S first. {S2} is the
# subject named again; the ABC corruption puts a third name there.
IOI_TEMPLATES: tuple[str, ...] = (
    "Then, {A} and {B} went to the {PLACE}. {S2} gave a {OBJECT} to",
    "Then, {A} and {B} had a long argument, and afterwards {S2} said to",
    "While {A} and {B} were working at the {PLACE}, {S2} gave a {OBJECT} to",
    "While {A} and {B} were commuting to the {PLACE}, {S2} gave a {OBJECT} to",
    "The {PLACE} {A} and {B} went to had a {OBJECT}. {S2} gave it to",
    "Friends {A} and {B} found a {OBJECT} at the {PLACE}. {S2} gave it to",
)

# ----------------------------------------------------------------------------- recall

# (subject, capital) for "The capital of {subject} is" -> " {capital}", grouped by kind; the
# corrupted prompt swaps in another subject of the same kind. Written down before measuring
# the model; pairs whose capital is not one token (Bangkok, Hanoi, ...) or is only the first
# token of the name (Buenos Aires, Mexico City) are left out.
CAPITALS: dict[str, tuple[tuple[str, str], ...]] = {
    "country": (
        ("France", "Paris"), ("Germany", "Berlin"), ("Italy", "Rome"), ("Spain", "Madrid"),
        ("Japan", "Tokyo"), ("Russia", "Moscow"), ("Egypt", "Cairo"), ("Greece", "Athens"),
        ("England", "London"), ("Austria", "Vienna"), ("Poland", "Warsaw"),
        ("Portugal", "Lisbon"), ("Ireland", "Dublin"), ("Norway", "Oslo"),
        ("Sweden", "Stockholm"), ("Denmark", "Copenhagen"), ("Finland", "Helsinki"),
        ("Hungary", "Budapest"), ("Canada", "Ottawa"), ("Kenya", "Nairobi"), ("Cuba", "Havana"),
        ("Peru", "Lima"), ("Chile", "Santiago"), ("China", "Beijing"), ("Iran", "Tehran"),
        ("Iraq", "Baghdad"), ("Syria", "Damascus"), ("Afghanistan", "Kabul"),
        ("Belgium", "Brussels"), ("Netherlands", "Amsterdam"), ("Switzerland", "Bern"),
        ("Australia", "Canberra"), ("Philippines", "Manila"), ("Scotland", "Edinburgh"),
        ("Wales", "Cardiff"), ("Bulgaria", "Sofia"), ("Tunisia", "Tunis"),
        ("Jamaica", "Kingston"),
    ),
    "us_state": (
        ("Texas", "Austin"), ("California", "Sacramento"), ("Ohio", "Columbus"),
        ("Georgia", "Atlanta"), ("Colorado", "Denver"), ("Massachusetts", "Boston"),
        ("Arizona", "Phoenix"), ("Tennessee", "Nashville"), ("Virginia", "Richmond"),
        ("Hawaii", "Honolulu"), ("Indiana", "Indianapolis"), ("Oregon", "Salem"),
        ("Illinois", "Springfield"), ("Wisconsin", "Madison"), ("Alabama", "Montgomery"),
        ("Connecticut", "Hartford"), ("Delaware", "Dover"), ("Maine", "Augusta"),
        ("Montana", "Helena"), ("Nebraska", "Lincoln"),
    ),
    "region": (
        ("Ontario", "Toronto"), ("Bavaria", "Munich"), ("Catalonia", "Barcelona"),
    ),
}

# ----------------------------------------------------------------------------- reasoning

# Cities for "{name} lives in {city}." bindings (one token each, all distinct).
CITIES: tuple[str, ...] = (
    "Paris", "Rome", "London", "Berlin", "Tokyo", "Madrid", "Moscow", "Cairo", "Athens",
    "Vienna", "Dublin", "Boston", "Chicago", "Denver", "Seattle", "Sydney", "Toronto", "Lisbon",
    "Prague", "Oslo", "Miami", "Dallas", "Houston", "Atlanta",
)
