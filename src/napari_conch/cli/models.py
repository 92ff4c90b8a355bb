"""``napari-conch models``: the models napari-conch knows, and whether their files are here."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``models`` subcommand."""
    parser = subparsers.add_parser(
        "models",
        help="list the models napari-conch can use and whether their files are found",
        description=(
            "The known models (CONCH, the demo model, QuiltNet, PLIP, KEEP, BiomedCLIP): what "
            "each is, its licence, its input size, its zero-shot templates, whether its files are "
            "in the Hugging Face cache (or in FOLDER) and how to get them. Nothing is downloaded."
        ),
    )
    parser.add_argument(
        "--folder", metavar="FOLDER", help="a folder holding a model's files, to check it"
    )
    parser.set_defaults(func=run)


def model_lines(folder: str | None = None) -> list[str]:
    """One block of lines per known model."""
    from napari_conch.model.clip_sources import KNOWN_MODELS, where_found

    lines = [
        "CONCH (MahmoodLab/conch): CoCa ViT-B/16, 448 px; CC-BY-NC-ND 4.0, gated (request "
        "access on its Hugging Face page); --model hf_hub:MahmoodLab/conch or its "
        "pytorch_model.bin",
        "demo: a small CoCa trained here, not CONCH, not for diagnosis; shipped (--model demo)",
    ]
    for card in KNOWN_MODELS:
        found = where_found(card) if card.supported else "not yet supported"
        lines.append(
            f"{card.name} ({card.repo}): {card.summary}; {card.image_size} px; licence: "
            f"{card.licence}; zero-shot templates: {card.templates}; {found}"
        )
        if card.supported:
            lines.append(f"  get it: {card.how_to_get}")
    if folder is not None:
        from pathlib import Path

        from napari_conch.model.clip_sources import folder_files, folder_kind

        path = Path(folder)
        kind = folder_kind(path) if path.is_dir() else None
        if kind is None:
            lines.append(f"{folder}: not a CLIP model folder (no open_clip_config.json, nor a "
                         "config.json of model_type clip or keep)")  # fmt: skip
        else:
            from napari_conch.errors import NapariConchError

            try:
                files = folder_files(path)
                lines.append(f"{folder}: a {kind} model folder ({files.weights.name})")
            except NapariConchError as exc:
                lines.append(f"{folder}: {exc}")
    return lines


def run(args: argparse.Namespace) -> int:
    """Print the list."""
    for line in model_lines(args.folder):
        print(line)
    return 0
