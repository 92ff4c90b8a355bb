"""Pieces several subcommands share."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from typing import Any

from napari_conch.bounds import Bounds
from napari_conch.errors import InputError

MODEL_ENV = "NAPARI_CONCH_MODEL"
MODEL_HELP = f"checkpoint file or folder, hf_hub:MahmoodLab/conch, or demo (default: ${MODEL_ENV})"


def number(bounds: Bounds) -> Callable[[str], Any]:
    """An argparse ``type=`` that parses a number and checks it against ``bounds``.

    Refused text (``nan``, ``-1`` for a count, ``abc``) is argparse's one-line error
    ``argument --OPTION: TEXT: what is wrong`` with exit status 2, before any work.
    """
    whole = bounds.kind is int

    def parse(text: str) -> Any:
        try:
            value = int(text) if whole else float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not {'a whole number' if whole else 'a number'}"
            ) from None
        problem = bounds.problem(value)
        if problem is not None:
            raise argparse.ArgumentTypeError(f"{text}: {problem}")
        return value

    parse.__name__ = "whole number" if whole else "number"  # argparse names it in errors
    return parse


def add_model_argument(parser: argparse.ArgumentParser) -> None:
    """``--model SRC``, defaulting to ``$NAPARI_CONCH_MODEL``."""
    parser.add_argument("--model", metavar="SRC", help=MODEL_HELP)


def add_precision_argument(parser: Any) -> None:
    """``--precision auto|fp32|bf16|fp16|int8`` (choices, help and default: ``RunOptions``)."""
    from napari_conch.cli.option_arguments import add_option
    from napari_conch.engine.options import RunOptions

    add_option(parser, RunOptions, "precision")


def add_store_model_arguments(parser: argparse.ArgumentParser, whose: str = "the store's") -> None:
    """``--model``, ``--config``, ``--tokenizer`` (default: what made the store), ``--device``
    and ``--precision``.

    For the commands that read stores and only need the text encoder: ``whose`` names the
    default in the help ("the store's", "the stores'").
    """
    parser.add_argument("--model", metavar="SRC", help=f"model source (default: {whose})")
    parser.add_argument("--config", metavar="JSON", help=f"model config (default: {whose})")
    parser.add_argument("--tokenizer", metavar="PATH", help=f"tokenizer JSON (default: {whose})")
    parser.add_argument("--device", metavar="D", help="torch device for the text encoder")
    add_precision_argument(parser)


def add_wait_argument(parser: argparse.ArgumentParser, help: str) -> None:
    """``--wait [SECONDS]``: wait for a process writing the store (no number: for ever)."""
    from napari_conch.engine.options import WAIT_BOUNDS

    parser.add_argument(
        "--wait", nargs="?", type=number(WAIT_BOUNDS), const=float("inf"), metavar="SECONDS",
        help=help,
    )  # fmt: skip


def model_source(args: argparse.Namespace) -> str:
    """The model the arguments or the environment name; a clear error when none does."""
    source = args.model or os.environ.get(MODEL_ENV)
    if not source:
        raise InputError(
            "no model given: pass --model with CONCH's pytorch_model.bin (or "
            f"hf_hub:MahmoodLab/conch), or --model demo for the demo model shipped with "
            f"napari-conch (not CONCH), or set {MODEL_ENV}"
        )
    return source


def no_embeddings_reason(store: Any) -> str:
    """Why a store has no embedded tile, from what its runs recorded (one line).

    Tells apart a store never embedded, a slide where no tissue was found, tiles that all failed
    (with the recorded reasons), a run that stopped before any tile was done and tiles that were
    embedded but are damaged on disk, so the advice fits what happened.
    """
    head = f"{store.path}: no embedded tiles"
    damage = store.verify()
    if damage.lost_count:
        return (
            f"{head}: {damage.tiles_text()} are damaged on disk [{damage.problems()}]; repair "
            f"with napari-conch verify --repair {store.path}, then run napari-conch embed again"
        )
    counts, attrs = store.counts(), store.attrs
    last = attrs.get("last_run") or {}
    total = sum(counts.values())
    if counts.get("failed"):
        reasons = last.get("failed_reasons") or {}
        why = "; ".join(f"{text} ({n})" for text, n in reasons.items())
        return (
            f"{head}: all {counts['failed']} tissue tiles failed when embedded"
            + (f" ({why})" if why else "")
            + "; fix the cause and run napari-conch embed again"
        )
    if total and counts.get("background") == total:
        at = attrs.get("min_tissue")
        level = f" at --min-tissue {at:g}" if isinstance(at, int | float) else ""
        return (
            f"{head}: napari-conch embed found no tissue{level}; embed again with a lower "
            "--min-tissue or check the slide"
        )
    if last:
        stop = last.get("error") or ("cancelled" if last.get("cancelled") else "stopped")
        return (
            f"{head}: the last embed run ended before any tile was done ({stop}); run "
            "napari-conch embed again to resume"
        )
    return f"{head} yet (run napari-conch embed)"


def add_templates_argument(parser: argparse.ArgumentParser, words: str) -> None:
    """``--templates conch|none|quiltnet|plip|keep|biomedclip``, said as ``words``.

    ``None`` (the model's own) when left out (``PromptOptions.templates``).
    """
    from napari_conch.cli.option_arguments import add_option
    from napari_conch.engine.options import PromptOptions

    add_option(parser, PromptOptions, "templates", words=words)


def add_prompt_arguments(parser: argparse.ArgumentParser, templates_words: str) -> None:
    """``--prompt TEXT`` (repeatable), ``--prompts JSON`` and ``--templates``."""
    parser.add_argument(
        "--prompt", action="append", default=[], metavar="TEXT", help="a prompt (repeatable)"
    )
    parser.add_argument(
        "--prompts", metavar="JSON", help='CONCH prompt file {"classnames": ..., "templates": ...}'
    )
    add_templates_argument(parser, templates_words)


def named_prompt_sets(args: argparse.Namespace, templates: str) -> list:
    """The prompt sets of ``--prompt`` and ``--prompts`` (see :func:`add_prompt_arguments`),
    with ``templates`` for ``--prompt`` and a prompt file without any."""
    from napari_conch.engine.prompts import PromptSet, load_prompt_set

    sets = []
    if args.prompt:
        sets.append(PromptSet.from_prompts(args.prompt, templates))
    if args.prompts:
        sets.append(load_prompt_set(args.prompts, templates))
    return sets
