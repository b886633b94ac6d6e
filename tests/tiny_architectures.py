"""Tiny random models of the ten encoder architectures the kit supports, each with a tokenizer of its real kind
(WordPiece, byte-level BPE, or SentencePiece-style Unigram with Metaspace) trained in seconds on the given texts
with the `tokenizers` library, and wrapped in the tokenizer class transformers uses for that architecture.

Why: the architectures differ where the kit's code is fragile (position schemes, masks, token type ids, how
pre-split words are tokenized, ONNX export), and none can be downloaded offline. Used by tests/test_architectures.py
and tests/test_tokenizer_check.py, and by `benchmarks/train_throughput.py --tiny_architecture` through `main`:

    python -m tests.tiny_architectures --out /tmp/tiny --texts ../shared/data/conll2003/train.txt deberta-v2 modernbert
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from pathlib import Path
from typing import Any

#: Per architecture: the kind of tokenizer, its special tokens (the first ones get the lowest ids, in this order, as
#: in the released vocabularies), and the settings of a tiny model (hidden 32, 2 layers, 2 heads unless given).
ARCHITECTURES: dict[str, dict[str, Any]] = {
    "bert": {"tokenizer": "wordpiece", "class": "BertTokenizer"},
    "electra": {"tokenizer": "wordpiece", "class": "ElectraTokenizer", "config": {"embedding_size": 32}},
    "distilbert": {"tokenizer": "wordpiece", "class": "DistilBertTokenizer"},
    "mpnet": {
        "tokenizer": "wordpiece",
        "class": "MPNetTokenizer",
        "special": ["<s>", "<pad>", "</s>", "[UNK]", "<mask>"],
    },
    "roberta": {
        "tokenizer": "bpe",
        "class": "RobertaTokenizer",
        "special": ["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
    },
    "modernbert": {
        "tokenizer": "bpe",
        "class": "TokenizersBackend",
        "special": ["[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]"],
        "config": {"local_attention": 8, "global_attn_every_n_layers": 2},
    },
    "xlm-roberta": {
        "tokenizer": "unigram",
        "class": "XLMRobertaTokenizer",
        "special": ["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
    },
    "camembert": {
        "tokenizer": "unigram",
        "class": "CamembertTokenizer",
        "special": ["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
    },
    "albert": {
        "tokenizer": "unigram",
        "class": "AlbertTokenizer",
        "special": ["<pad>", "<unk>", "[CLS]", "[SEP]", "[MASK]"],
        "config": {"embedding_size": 16},
    },
    "deberta-v2": {
        "tokenizer": "unigram",
        "class": "DebertaV2Tokenizer",
        "special": ["[PAD]", "[CLS]", "[SEP]", "[UNK]", "[MASK]"],
        "config": {
            "relative_attention": True,
            "position_biased_input": False,
            "pos_att_type": ["p2c", "c2p"],
            "max_relative_positions": -1,
            "position_buckets": 8,
            "norm_rel_ebd": "layer_norm",
            "share_att_key": True,
        },
    },
}
WORDPIECE_SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
#: Size settings per shape: "tiny" for the tests, "small" (MiniLM-like) for throughput ratios.
SHAPES = {
    "tiny": {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64},
    "small": {"hidden_size": 384, "num_hidden_layers": 6, "num_attention_heads": 12, "intermediate_size": 1536},
}
#: The small shape keeps the released models' position settings (the tiny one narrows them so that short test
#: sentences cross them): ModernBERT's 128-token local window every third layer global, DeBERTa-v3's 256 buckets.
RELEASED_POSITIONS = {
    "modernbert": {"local_attention": 128, "global_attn_every_n_layers": 3},
    "deberta-v2": {"position_buckets": 256},
}


def train_tokenizer(model_type: str, texts: Iterable[str], vocab_size: int):
    """A transformers tokenizer of the architecture's real kind, its vocabulary trained on `texts`."""
    import transformers
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    spec = ARCHITECTURES[model_type]
    texts = list(texts)
    special = spec.get("special", WORDPIECE_SPECIAL)
    cls = getattr(transformers, spec["class"])
    if spec["tokenizer"] == "wordpiece":
        tokenizer = Tokenizer(models.WordPiece(unk_token=special[3] if model_type == "mpnet" else "[UNK]"))
        tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
        tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tokenizer.train_from_iterator(texts, trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=special))
        return cls(vocab=tokenizer.get_vocab())
    if spec["tokenizer"] == "bpe":
        tokenizer = Tokenizer(models.BPE())
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tokenizer.decoder = decoders.ByteLevel()
        tokenizer.train_from_iterator(
            texts,
            trainers.BpeTrainer(
                vocab_size=vocab_size, special_tokens=special, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
            ),
        )
        if model_type == "roberta":
            import json

            merges = [tuple(pair) for pair in json.loads(tokenizer.to_str())["model"]["merges"]]
            return cls(vocab=tokenizer.get_vocab(), merges=merges)
        # ModernBERT ships a tokenizer.json alone (byte-level BPE, no prefix space): transformers loads it as the
        # generic TokenizersBackend, which is where `add_prefix_space=True` does not reach the pre-tokenizer.
        from tokenizers import processors

        tokenizer.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]",
            pair="[CLS] $A [SEP] $B [SEP]",
            special_tokens=[(token, tokenizer.token_to_id(token)) for token in ("[CLS]", "[SEP]")],
        )
        return cls(
            tokenizer_object=tokenizer,
            unk_token="[UNK]",
            cls_token="[CLS]",
            sep_token="[SEP]",
            pad_token="[PAD]",
            mask_token="[MASK]",
        )
    tokenizer = Tokenizer(models.Unigram())
    tokenizer.normalizer = normalizers.Lowercase() if model_type == "albert" else None
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.train_from_iterator(
        texts,
        trainers.UnigramTrainer(
            vocab_size=vocab_size, special_tokens=special, unk_token=special[3] if model_type != "albert" else "<unk>"
        ),
    )
    import json

    vocab = [tuple(piece) for piece in json.loads(tokenizer.to_str())["model"]["vocab"]]
    return cls(vocab=vocab)


def build(
    model_type: str,
    directory: str | Path,
    texts: Iterable[str],
    vocab_size: int = 1000,
    shape: str = "tiny",
    seed: int = 0,
) -> str:
    """Save a random `model_type` encoder of the given shape with a freshly trained tokenizer in `directory`."""
    import torch
    from transformers import AutoConfig, AutoModel

    directory = Path(directory)
    tokenizer = train_tokenizer(model_type, texts, vocab_size)
    spec = ARCHITECTURES[model_type]
    size = dict(SHAPES[shape])
    if model_type == "distilbert":
        size = {
            "dim": size["hidden_size"],
            "n_layers": size["num_hidden_layers"],
            "n_heads": size["num_attention_heads"],
            "hidden_dim": size["intermediate_size"],
        }
    ids = {
        name: tokenizer.convert_tokens_to_ids(getattr(tokenizer, f"{name}_token"))
        for name in ("pad", "cls", "sep", "bos", "eos")
        if getattr(tokenizer, f"{name}_token", None)
    }
    ids.setdefault("bos", ids["cls"])  # ModernBERT's tokenizer has no <s>/</s>: its config names [CLS]/[SEP]
    ids.setdefault("eos", ids["sep"])
    special_ids = {f"{name}_token_id": value for name, value in ids.items()}
    config = AutoConfig.for_model(
        model_type,
        vocab_size=len(tokenizer),
        max_position_embeddings=512,
        **size,
        **special_ids,
        **{**spec.get("config", {}), **(RELEASED_POSITIONS.get(model_type, {}) if shape == "small" else {})},
    )
    torch.manual_seed(seed)
    AutoModel.from_config(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return str(directory)


def conll_texts(path: str | Path) -> list[str]:
    """The sentences of a CoNLL file as running text (words joined by spaces)."""
    from utils.core.conll import read_conll

    return [" ".join(words) for words in read_conll(str(path)).tokens]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("architectures", nargs="+", choices=list(ARCHITECTURES))
    parser.add_argument("--out", type=Path, required=True, help="One folder per architecture is made here.")
    parser.add_argument("--texts", type=Path, required=True, help="A CoNLL file whose sentences train the tokenizer.")
    parser.add_argument("--shape", choices=list(SHAPES), default="small")
    parser.add_argument("--vocab_size", type=int, default=8000)
    args = parser.parse_args()
    texts = conll_texts(args.texts)
    for model_type in args.architectures:
        print(build(model_type, args.out / model_type, texts, args.vocab_size, args.shape))


if __name__ == "__main__":
    main()
