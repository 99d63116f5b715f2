"""Shortcut baselines: how well a trivial rule does on a family's evaluation items.

A task whose items a trivial rule solves yields trivial circuits (a two-hop item answered by
"the only place in the prompt" tests no reasoning), so the tests check these stay near chance.
Each rule maps an :class:`Item` to a guessed answer word.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence

from data.organism.corpus import Item
from data.organism.world import World

Rule = Callable[[Item], str]


def _candidates(item: Item, kind: set[str]) -> list[str]:
    return [w for w in item.prompt if w in kind]


def reasoning_rules(world: World) -> dict[str, Rule]:
    """First / last city in context, and the memorised home city of the queried person."""
    cities = set(world.cities)
    return {
        "first_city": lambda it: _candidates(it, cities)[0],
        "last_city": lambda it: _candidates(it, cities)[-1],
        "memorised_city": lambda it: world.city[it.prompt[-3]],  # "... so X is in"
    }


def ioi_rules(world: World) -> dict[str, Rule]:
    """First / last name in the sentence, and the repeated name (the subject)."""
    names = set(world.names)
    return {
        "first_name": lambda it: _candidates(it, names)[0],
        "last_name": lambda it: _candidates(it, names)[-1],
    }


def recall_rules(world: World) -> dict[str, Rule]:
    """The most common city / job of the world (the best answer without memorisation)."""
    top_city = Counter(world.city.values()).most_common(1)[0][0]
    top_job = Counter(world.job.values()).most_common(1)[0][0]
    return {"most_common_value": lambda it: top_city if it.variant == "city" else top_job}


RULES = {"reasoning": reasoning_rules, "ioi": ioi_rules, "recall": recall_rules}


def baseline_accuracies(items: Sequence[Item], world: World) -> dict[str, float]:
    """Accuracy of each trivial rule of the items' family (empty for induction)."""
    if not items:
        raise ValueError("no items")
    family = items[0].family
    rules = RULES.get(family, lambda w: {})(world)
    return {name: sum(rule(it) == it.answer for it in items) / len(items)
            for name, rule in rules.items()}
