"""The CONCH CoCa model: image encoder, text encoder and captioning decoder together.

CoCa (Yu et al., "CoCa: Contrastive Captioners are Image-Text Foundation Models", 2022) in the
form CONCH (Lu et al., Nature Medicine 2024) trained it. ``state_dict()`` keys are those of the
official ``pytorch_model.bin``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from napari_conch.model.config import CocaConfig
from napari_conch.model.text import MultimodalDecoder, TextTransformer
from napari_conch.model.vision import VisualModel


class CoCa(nn.Module):
    """CONCH's CoCa.

    Parameters
    ----------
    config : CocaConfig
        The architecture. Build it with :func:`napari_conch.model.build_model`.
    """

    def __init__(self, config: CocaConfig) -> None:
        super().__init__()
        self.config = config
        self.text = TextTransformer(config.text, config.embed_dim)
        self.visual = VisualModel(config)
        self.text_decoder = MultimodalDecoder(config.multimodal)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        #: False until weights that include the decoder were loaded (see ``load_state_dict``).
        self.decoder_trained = False

    @property
    def image_size(self) -> int:
        """Input size the model was built for (other sizes work; see ``encode_image``)."""
        return self.config.vision.image_size

    def encode_image(
        self, images: torch.Tensor, proj_contrast: bool = True, normalize: bool = True
    ) -> torch.Tensor:
        """Contrastive image embedding ``[B, D]`` of normalised images ``[B, 3, H, W]``.

        Parameters
        ----------
        images : torch.Tensor
            Preprocessed images. Sizes other than the configured one (multiples of the patch size)
            work: the position embedding is resampled.
        proj_contrast : bool
            Apply the contrastive projection (the embedding that matches text). Without it, the
            pooled features before projection.
        normalize : bool
            L2-normalise the result.
        """
        tokens = self.visual.trunk(images)
        features = self.visual.pooled_unprojected(tokens)
        if proj_contrast:
            features = features @ self.visual.proj_contrast
        return F.normalize(features, dim=-1) if normalize else features

    def encode_text(self, tokens: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """Contrastive text embedding ``[B, D]`` of token ids ``[B, context_length]``.

        As in CONCH, the last position of ``tokens`` is dropped to make room for the CLS token.
        """
        pooled, _ = self.text(tokens[:, :-1])
        return F.normalize(pooled, dim=-1) if normalize else pooled

    def image_tokens(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised contrastive embedding and the caption tokens the decoder attends to."""
        latent, caption_tokens = self.visual(images)
        return F.normalize(latent, dim=-1), caption_tokens

    def decode(self, caption_tokens: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Decoder logits ``[B, L, vocab]``: for each position of ``tokens``, the next id.

        This is how generation runs the decoder: every id of ``tokens`` is used (the training
        forward drops the last one instead, see ``forward``).
        """
        _, text_tokens = self.text(tokens)
        return self.text_decoder(caption_tokens, text_tokens)

    def forward(
        self, images: torch.Tensor, tokens: torch.Tensor, embed_cls: bool = True
    ) -> dict[str, torch.Tensor]:
        """The reference forward pass.

        Parameters
        ----------
        images : torch.Tensor
            Preprocessed images ``[B, 3, H, W]``.
        tokens : torch.Tensor
            Token ids ``[B, L]``.
        embed_cls : bool
            Drop the last id to make room for the CLS token (the reference's default).

        Returns
        -------
        dict
            ``image_features`` and ``text_features`` (normalised embeddings), ``logits`` (decoder
            logits, one position per text token used), ``labels`` (the ids those logits should
            predict) and ``logit_scale`` (exponentiated: the softmax temperature).
        """
        text_in = tokens[:, :-1] if embed_cls else tokens
        pooled, text_tokens = self.text(text_in)
        image_features, caption_tokens = self.image_tokens(images)
        return {
            "image_features": image_features,
            "text_features": F.normalize(pooled, dim=-1),
            "logits": self.text_decoder(caption_tokens, text_tokens),
            "labels": tokens[:, -text_tokens.shape[1] :],
            "logit_scale": self.logit_scale.exp(),
        }


DECODER_PREFIX = "text_decoder."


def split_decoder_keys(names) -> tuple[list[str], list[str]]:
    """Split parameter names into (decoder, other)."""
    names = list(names)
    decoder = [n for n in names if n.startswith(DECODER_PREFIX)]
    return decoder, [n for n in names if not n.startswith(DECODER_PREFIX)]
