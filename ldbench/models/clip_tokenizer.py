"""Stable Diffusion v1's text tokenizer (OpenAI CLIP's BPE: 49,408 tokens, 77 positions), built offline.

The BPE merges are the file OpenAI's CLIP ships, ``bpe_simple_vocab_16e6.txt.gz``, which the
``open-clip-torch`` wheel installs beside its code. The file is found through the package's installed
metadata (its Python modules, which import torch and timm, are never imported), checked against a pinned
SHA-256 (ldbench.packaged), and turned into ``vocab.json`` + ``merges.txt`` exactly as CLIP's SimpleTokenizer builds
its vocabulary (and as the files of openai/clip-vit-large-patch14, the tokenizer of CompVis/stable-
diffusion-v1-4, hold it): the 256 byte symbols, the same with ``</w>``, one token per merge, then
``<|startoftext|>`` (49406) and ``<|endoftext|>`` (49407).
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from ldbench.errors import UserError
from ldbench.packaged import PackagedFile

BPE_SHA256 = "924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a"
# the same file in every open-clip-torch release since 2.0
BPE = PackagedFile("open_clip_torch", "open_clip/bpe_simple_vocab_16e6.txt.gz", BPE_SHA256, "open-clip-torch>=2.20")
VOCAB_SIZE = 49_408
MAX_LENGTH = 77
BOS, EOS = "<|startoftext|>", "<|endoftext|>"
_N_MERGES = 49_152 - 256 - 2  # CLIP keeps lines[1 : 49152 - 256 - 2 + 1] of the file


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's / CLIP's reversible map from the 256 byte values to printable unicode characters."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs), strict=True))


def vocab_and_merges(bpe: bytes) -> tuple[dict[str, int], list[str]]:
    """CLIP's token -> id map and its ordered merges ("a b" lines), from the BPE file's bytes."""
    lines = gzip.decompress(bpe).decode("utf-8").split("\n")
    merges = lines[1 : _N_MERGES + 1]
    symbols = list(bytes_to_unicode().values())
    tokens = symbols + [s + "</w>" for s in symbols] + ["".join(m.split()) for m in merges] + [BOS, EOS]
    vocab = {tok: i for i, tok in enumerate(tokens)}
    if len(vocab) != VOCAB_SIZE:
        raise UserError(f"{BPE.path}: gives {len(vocab)} tokens, not CLIP's {VOCAB_SIZE}")
    return vocab, merges


def write_tokenizer_files(directory: Path) -> Path:
    """vocab.json, merges.txt and tokenizer_config.json of SD v1's tokenizer in `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    vocab, merges = vocab_and_merges(BPE.read())
    (directory / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (directory / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    config = {"tokenizer_class": "CLIPTokenizer", "model_max_length": MAX_LENGTH, "bos_token": BOS,
              "eos_token": EOS, "unk_token": EOS, "pad_token": EOS, "do_lower_case": True}
    (directory / "tokenizer_config.json").write_text(json.dumps(config, indent=1))
    return directory


def clip_tokenizer(directory: Path):
    """transformers' CLIPTokenizer with CLIP ViT-L/14's vocabulary (written into `directory`)."""
    from transformers import CLIPTokenizer

    return CLIPTokenizer.from_pretrained(str(write_tokenizer_files(directory)), model_max_length=MAX_LENGTH)
