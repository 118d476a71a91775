"""A tiny random BERT saved to a directory, for fast offline tests of code that encodes.

>>> from llmrec.text.testing import save_tiny_bert
>>> enc = llmrec.TextEncoder(save_tiny_bert(tmp_path / "bert"))

Its vectors mean nothing, but it exercises the whole path (tokenizer, padding, model,
pooling) in milliseconds, without a download. Needs torch, transformers and tokenizers.
"""

from __future__ import annotations

import os
from pathlib import Path

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = (
    "the a an of and in on for with to is was story film movie love war family young man "
    "woman city life world journey secret dark comedy drama action thriller night old new "
    "friends house power lost time light weekend heat toy fargo star space crime funny sad"
).split()


def tiny_vocabulary() -> list[str]:
    """Special tokens, whole words, and single characters (plain and ``##``) as fallback."""
    characters = list("abcdefghijklmnopqrstuvwxyz0123456789.,;:!?()'-")
    return SPECIAL_TOKENS + WORDS + characters + ["##" + c for c in characters]


def save_tiny_bert(directory: str | os.PathLike[str], *, hidden_size: int = 32,
                   num_layers: int = 2, num_heads: int = 2, max_positions: int = 128,
                   seed: int = 0) -> Path:
    """Write a random BERT and its WordPiece tokenizer to ``directory``; return the path."""
    import torch
    from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordPiece
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    vocabulary = {token: i for i, token in enumerate(tiny_vocabulary())}
    backend = Tokenizer(WordPiece(vocabulary, unk_token="[UNK]", max_input_chars_per_word=100))
    backend.normalizer = normalizers.BertNormalizer(lowercase=True)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.decoder = decoders.WordPiece()
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocabulary["[CLS]"]), ("[SEP]", vocabulary["[SEP]"])])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
        sep_token="[SEP]", mask_token="[MASK]", model_max_length=max_positions)
    tokenizer.save_pretrained(str(directory))

    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(vocabulary), hidden_size=hidden_size,
                        num_hidden_layers=num_layers, num_attention_heads=num_heads,
                        intermediate_size=2 * hidden_size, max_position_embeddings=max_positions)
    BertModel(config).eval().save_pretrained(str(directory))
    return directory
