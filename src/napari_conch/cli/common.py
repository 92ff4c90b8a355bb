"""Pieces several subcommands share."""

from __future__ import annotations

import argparse
import os

from napari_conch.errors import InputError

MODEL_ENV = "NAPARI_CONCH_MODEL"
MODEL_HELP = f"checkpoint file or folder, hf_hub:MahmoodLab/conch, or demo (default: ${MODEL_ENV})"


def add_model_argument(parser: argparse.ArgumentParser) -> None:
    """``--model SRC``, defaulting to ``$NAPARI_CONCH_MODEL``."""
    parser.add_argument("--model", metavar="SRC", help=MODEL_HELP)


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
