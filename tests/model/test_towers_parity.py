"""KEEP and BiomedCLIP against their own libraries: timm + transformers as KEEP assembles them,
and open_clip.

Seeded random weights in small configurations: the reference builds the model, its weights are
written as the model's published files, napari-conch loads that folder, and image embeddings,
text embeddings and the logit scale must agree to 1e-5; the token ids must equal transformers'
``BertTokenizer`` (KEEP) and open_clip's ``HFTokenizer`` (BiomedCLIP) on the same vocabulary
(built by the test). The full-size configurations are built on the meta device by the reference
libraries and their parameter names and shapes compared with ours. Skipped, with the reason,
without the reference libraries (``pip install 'napari-conch[reference]'``).
"""

from __future__ import annotations

import json

import numpy
import torch
from torch import nn

from napari_conch.model import clear_model_cache, load_model
from napari_conch.model.towers import build_towers, published_names
from napari_conch.model.towers_config import from_keep, from_open_clip_towers
from tests.model.reference_libs import import_open_clip, import_timm, import_transformers
from tests.model.tower_folders import (
    biomedclip_config,
    keep_config,
    write_bert_folder,
    write_vocab,
)

TOL = 1e-5
#: 44 texts: cases, accents, punctuation, digits, CJK, control and zero-width characters,
#: HTML entities, unknown words, special tokens written out, empty and over-long texts.
TEXTS = [
    "an H&E image of breast invasive carcinoma.",
    "an H&E image of normal tissue.",
    "an H&E image of lung adenocarcinoma.",
    "Tumor",
    "TUMOUR stroma",
    "clear cell renal cell carcinoma.",
    "papillary RCC.",
    "chromophobe renal cell carcinoma of the chromophobe type",
    "Lymphocytes, necrosis; fat & adipose tissue!",
    "this is a photo of squamous cell carcinoma",
    "histopathology slide showing ductal carcinoma in situ",
    "Café naïve résumé",
    "Über-tumour",
    "ÀÉÎÕÜ",
    "日本語のテキスト",
    "腫瘍 tumor",
    "tab\tseparated\ttext",
    "line\nbreaks\r\nhere",
    "zero\u200bwidth",
    "nul\x00char",
    "  leading and trailing  ",
    "",
    "   ",
    "x" * 150,
    "supercalifragilisticexpialidocious",
    "necrosis " * 300,
    "[MASK] tumor",
    "[CLS] stroma [SEP]",
    "tumor [PAD] x",
    "[unk] lower-case special",
    "a&amp;b &lt;tumor&gt;",
    "it's the tumour's edge",
    "(parentheses) [brackets] {braces}",
    "3.5 mm, 10x magnification, 40%",
    "e.g. i.e. etc.",
    "mucosa/muscle-layer",
    "«quoted» “curly” ‘single’",
    "emoji 🙂 in text",
    "Ω≈ç√∫ math",
    "well-differentiated adenocarcinoma",
    "poorly differentiated, high-grade",
    "CASE 12345-A",
    "non\u00a0breaking space",
    "mixed CASE and 123 digits",
]


def _randomise(model: nn.Module, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("logit_scale"):
                param.fill_(3.0 + torch.rand((), generator=gen).item())
            elif param.ndim == 1 and "norm" in name.lower() and name.endswith("weight"):
                param.copy_(1 + 0.1 * torch.randn(param.shape, generator=gen))
            else:
                param.copy_(0.05 * torch.randn(param.shape, generator=gen))


def _images(size: int, seed: int = 3) -> torch.Tensor:
    return torch.randn(3, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _shapes(state) -> dict[str, tuple]:
    return {k: tuple(v.shape) for k, v in state.items()}


# ---------------------------------------------------------------------------------------------
# REFERENCE: KEEP as its own modelling code assembles it (KEEP's GitHub repository,
# quick_start/keep_inference.py and WSI_evaluation/load_keep.py: ``KEEPModel``). Written here with
# timm and transformers, the libraries KEEP's code calls; only the sizes come from the test's
# config (KEEP hard-codes ViT-L/16 at 224 px).
# ---------------------------------------------------------------------------------------------
class KeepReference(nn.Module):
    """REFERENCE ONLY (test code): KEEP's ``KEEPModel`` built from timm and transformers."""

    def __init__(self, config: dict) -> None:
        super().__init__()
        timm, transformers = import_timm(), import_transformers()
        v = config.get("vision_config") or {}
        self.visual = timm.create_model(
            "vit_large_patch16_224",
            pretrained=False,
            img_size=v.get("img_size", 224),
            patch_size=v.get("patch_size", 16),
            init_values=v.get("init_values", 1e-5),
            num_classes=0,
            dynamic_img_size=True,
            **{k: v[k] for k in ("embed_dim", "depth", "num_heads") if k in v},
        )
        projection = config["projection_dim"]
        self.visual_head = nn.Sequential(
            nn.Linear(self.visual.num_features, projection),
            nn.GELU(),
            nn.Linear(projection, projection),
        )
        self.text = transformers.BertModel(transformers.BertConfig(**config["text_config"]))
        self.logit_scale = nn.Parameter(torch.ones([]) * numpy.log(1 / 0.04))

    def encode_image(self, images):
        return nn.functional.normalize(self.visual_head(self.visual(images)), dim=-1)

    def encode_text(self, text_inputs):
        return nn.functional.normalize(self.text(**text_inputs).pooler_output, dim=-1)


def test_keep_parity(tmp_path):
    """A KEEP-style folder: KEEP's assembly of timm + transformers and ours agree."""
    transformers = import_transformers()
    size = write_vocab(tmp_path)
    config = keep_config(size, image_size=64, patch=16)
    torch.manual_seed(0)
    reference = KeepReference(config).eval()
    _randomise(reference, seed=4)
    (tmp_path / "config.json").write_text(json.dumps(config))
    torch.save(reference.state_dict(), tmp_path / "pytorch_model.bin")
    # KEEP: AutoTokenizer.from_pretrained(path, do_lower_case=True), 256 tokens, padded
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(tmp_path), do_lower_case=True)
    inputs = tokenizer(TEXTS, max_length=256, padding="max_length", truncation=True,
                       return_tensors="pt")  # fmt: skip
    clear_model_cache()
    ours = load_model(str(tmp_path), device="cpu")
    assert ours.preprocess.mean == (0.485, 0.456, 0.406)
    assert ours.preprocess.std == (0.229, 0.224, 0.225)
    ids, mask = ours.tokenizer.encode_with_mask(TEXTS)
    assert torch.equal(ids, inputs["input_ids"]) and torch.equal(mask, inputs["attention_mask"])
    images = _images(64)
    with torch.no_grad():
        ref_img = reference.encode_image(images)
        ref_txt = reference.encode_text(inputs)
        assert (ours.model.encode_image(images) - ref_img).abs().max() < TOL
        assert (ours.model.encode_text(ids, attention_mask=mask) - ref_txt).abs().max() < TOL
        assert (ours.embed_texts(TEXTS) - ref_txt).abs().max() < TOL
    scale = float(reference.logit_scale.detach().exp())
    assert abs(ours.logit_scale - scale) < TOL * ours.logit_scale
    clear_model_cache()


def test_keep_tokenizer_equals_bert_tokenizer_cased(tmp_path):
    """The vocabulary's own do_lower_case=False is followed when KEEP's override is not used."""
    transformers = import_transformers()
    from napari_conch.model.wordpiece import WordPieceTokenizer

    write_vocab(tmp_path, lowercase=False)
    reference = transformers.BertTokenizer(str(tmp_path / "vocab.txt"), do_lower_case=False)
    expected = reference(TEXTS, max_length=64, padding="max_length", truncation=True,
                         return_tensors="pt")  # fmt: skip
    ids, mask = WordPieceTokenizer.from_folder(tmp_path, 64).encode_with_mask(TEXTS)
    assert torch.equal(ids, expected["input_ids"])
    assert torch.equal(mask, expected["attention_mask"])
    assert (ids == 1).any()  # some pieces are unknown to the small vocabulary: [UNK] is tested


def test_tokenizer_json_with_keeps_lower_casing(tmp_path):
    """A folder with only ``tokenizer.json`` (as transformers 5 saves it), cased: KEEP's
    ``do_lower_case=True`` is applied as transformers applies it, and left as it is without."""
    transformers = import_transformers()
    from napari_conch.model.wordpiece import WordPieceTokenizer

    write_vocab(tmp_path, lowercase=False)
    saved = tmp_path / "saved"
    transformers.BertTokenizer(str(tmp_path / "vocab.txt"), do_lower_case=False).save_pretrained(
        str(saved)
    )
    (saved / "vocab.txt").unlink(missing_ok=True)
    assert (saved / "tokenizer.json").is_file()
    for lower in (True, None):
        kwargs = {} if lower is None else {"do_lower_case": lower}
        reference = transformers.AutoTokenizer.from_pretrained(str(saved), **kwargs)
        expected = reference(TEXTS, max_length=64, padding="max_length", truncation=True,
                             return_tensors="pt")  # fmt: skip
        ours = WordPieceTokenizer.from_folder(saved, 64, lowercase=lower)
        assert ours.path.name == "tokenizer.json"
        assert torch.equal(ours.encode(TEXTS), expected["input_ids"])


def test_biomedclip_parity(tmp_path):
    """A BiomedCLIP-style folder: open_clip's own CustomTextCLIP and ours agree."""
    open_clip = import_open_clip()
    import_timm()
    bert = write_bert_folder(tmp_path / "bert")
    folder = tmp_path / "model"
    folder.mkdir()
    write_vocab(folder)
    config = biomedclip_config(bert)
    model_cfg = json.loads(json.dumps(config["model_cfg"]))
    model_cfg["text_cfg"]["hf_model_pretrained"] = False  # a config, no BERT weights to fetch
    torch.manual_seed(0)
    reference = open_clip.CustomTextCLIP(**model_cfg).eval()
    _randomise(reference, seed=5)
    (folder / "open_clip_config.json").write_text(json.dumps(config))
    torch.save(reference.state_dict(), folder / "open_clip_pytorch_model.bin")
    tokenizer = open_clip.tokenizer.HFTokenizer(str(bert), context_length=256)
    ids = tokenizer(TEXTS)
    clear_model_cache()
    ours = load_model(str(folder), device="cpu")
    assert ours.preprocess.mean == tuple(config["preprocess_cfg"]["mean"])
    assert torch.equal(ours.tokenizer.encode(TEXTS), ids)
    images = _images(160)
    with torch.no_grad():
        ref_img = reference.encode_image(images, normalize=True)
        ref_txt = reference.encode_text(ids, normalize=True)
        assert (ours.model.encode_image(images) - ref_img).abs().max() < TOL
        assert (ours.model.encode_text(ids) - ref_txt).abs().max() < TOL
        assert (ours.embed_texts(TEXTS) - ref_txt).abs().max() < TOL
    scale = float(reference.logit_scale.detach().exp())
    assert abs(ours.logit_scale - scale) < TOL * ours.logit_scale
    clear_model_cache()


#: KEEP's published config as its code reads it: ViT-L/16 (hard-coded), a BERT-base text tower
#: (transformers' BertConfig defaults; KEEP's README names PubMedBERT), projection to 768.
KEEP_FULL = {"model_type": "keep", "projection_dim": 768, "text_config": {}}


def test_full_size_keep_names_and_shapes():
    transformers = import_transformers()
    text = transformers.BertConfig().to_dict()
    config = {**KEEP_FULL, "text_config": text}
    with torch.device("meta"):
        reference = KeepReference(config)
    ours = build_towers(from_keep(config), device="meta")
    expected = _shapes(published_names(reference.state_dict(), ours.config))
    assert _shapes(ours.state_dict()) == expected
    assert expected["visual.pos_embed"] == (1, 197, 1024) and len(expected) == 546
    assert sum(p.numel() for p in ours.parameters()) == sum(
        p.numel() for p in reference.parameters()
    )


def test_full_size_biomedclip_names_and_shapes(tmp_path):
    """BiomedCLIP's open_clip config (timm ViT-B/16, PubMedBERT: BERT-base, 256 tokens)."""
    open_clip = import_open_clip()
    import_timm()
    transformers = import_transformers()
    (tmp_path / "config.json").write_text(json.dumps(transformers.BertConfig().to_dict()))
    published = {
        "embed_dim": 512,
        "vision_cfg": {"timm_model_name": "vit_base_patch16_224", "timm_model_pretrained": False,
                       "timm_pool": "", "timm_proj": "linear", "image_size": 224},
        "text_cfg": {"hf_model_name": "microsoft/BiomedNLP-BiomedBERT-base-uncased-abstract",
                     "hf_tokenizer_name": "microsoft/BiomedNLP-BiomedBERT-base-uncased-abstract",
                     "hf_proj_type": "mlp", "hf_pooler_type": "cls_last_hidden_state_pooler",
                     "context_length": 256},
    }  # fmt: skip
    reference_cfg = json.loads(json.dumps(published))
    reference_cfg["text_cfg"].update(hf_model_name=str(tmp_path), hf_model_pretrained=False)
    with torch.device("meta"):
        reference = open_clip.CustomTextCLIP(**reference_cfg)
    ours = build_towers(from_open_clip_towers({"model_cfg": published}), device="meta")
    expected = _shapes(published_names(reference.state_dict(), ours.config))
    assert _shapes(ours.state_dict()) == expected
    assert expected["text.proj.0.weight"] == (640, 768)
    assert ours.config.context_length == 256
