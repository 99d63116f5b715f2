"""Options several ``attnlab`` commands share, declared once: their names, defaults and help.

A command module builds its parser from these (``add_command`` + ``add_model`` ...) so that
``--model``, ``--task``, ``--n``/``--seed`` and head lists read the same in every command, and
heads are typed in either notation (``L1H2`` or ``1.2``, :mod:`data.notation`).

    p = add_command(sub, common, "patch", run, "activation patching sweep", DESCRIPTION)
    add_model(p, default="organism")
    add_task(p)
    add_sample(p, "prompt pairs")
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

MODEL_HELP = "minilm | organism | a TransformerLens model name"
HEADS_HELP = ("comma-separated heads, each L<layer>H<head> or <layer>.<head> "
              "(e.g. L0H1,1.3); a head listed twice is an error")


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line, like every other ``attnlab`` error.

    argparse prints the usage block and then the error; the CLI's contract is one line on
    stderr and exit code 2 (``attnlab patch: error: argument --n: invalid int value: 'x'``),
    with ``--help`` one command away. Subcommand parsers inherit the class.
    """

    def error(self, message: str):
        text = " ".join(message.split())
        self.exit(2, f"{self.prog}: error: {text} (see `{self.prog} --help`)\n")


class DefaultsFormatter(argparse.HelpFormatter):
    """Help that states every option's default: argparse's ArgumentDefaultsHelpFormatter, less
    its repeats (a help text that already says "default" keeps its own words) and its noise
    (no "(default: None)" or "(default: False)" for an option without a value)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if ("default" in text.lower() or action.default in (None, False, argparse.SUPPRESS)
                or not action.option_strings or action.nargs == 0):
            return text
        return f"{text} (default: %(default)s)" if text else "default: %(default)s"


class RawDefaultsFormatter(argparse.RawDescriptionHelpFormatter, DefaultsFormatter):
    """:class:`DefaultsFormatter` for a description shown as written (a module docstring)."""


def add_command(sub, common: argparse.ArgumentParser | None, name: str,
                func: Callable[[argparse.Namespace], int], help: str,
                description: str | None = None,
                writes_runs: bool = True) -> argparse.ArgumentParser:
    """Add subcommand ``name`` (with the common ``--runs-dir``/``--device`` unless ``common``
    is None) whose ``func(args)`` does the work.

    ``description`` (default: ``help``) is what ``attnlab NAME --help`` shows above the
    options: a one-paragraph text is wrapped; one with line breaks (a command module's
    docstring, examples included) is shown as written. ``writes_runs``: the command writes
    runs, so the CLI checks that the run store is writable before any model work.
    """
    description = description or help
    formatter = RawDefaultsFormatter if "\n" in description.strip() else DefaultsFormatter
    p = sub.add_parser(name, parents=[common] if common is not None else [], help=help,
                       description=description, formatter_class=formatter)
    p.set_defaults(func=func, writes_runs=writes_runs)
    return p


def add_model(p: argparse.ArgumentParser, default: str | None = "organism",
              help: str = MODEL_HELP) -> None:
    """``--model`` (required when ``default`` is None)."""
    p.add_argument("--model", default=default, required=default is None, help=help)


def add_task(p: argparse.ArgumentParser, default: str | None = "ioi",
             help: str = "data.tasks task (decoders)") -> None:
    """``--task``: the name of a :mod:`data.tasks` task."""
    p.add_argument("--task", default=default, help=help)


def add_sample(p: argparse.ArgumentParser, what: str = "prompt pairs", n: int = 64,
               when: str = "") -> None:
    """``--n`` (how many task items) and ``--seed`` (which ones).

    ``when`` (e.g. "decoders"): the options apply only then; their default is None so that
    the command can tell a typed one (an error where it does not apply) from the default.
    """
    default_n, default_seed = (None, None) if when else (n, 0)
    only = f"; {when} only" if when else ""
    p.add_argument("--n", type=int, default=default_n, help=f"{what} (default {n}{only})")
    p.add_argument("--seed", type=int, default=default_seed,
                   help=f"seed of the sampled items (default 0{only})")
