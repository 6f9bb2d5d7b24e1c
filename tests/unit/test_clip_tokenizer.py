"""SD v1.4's tokenizer, built offline from CLIP's BPE file: the same ids as OpenAI CLIP's / open_clip's
tokenizer and as CompVis/stable-diffusion-v1-4's (openai/clip-vit-large-patch14)."""

import hashlib

import pytest

from ldbench.models.clip_tokenizer import BPE, BPE_SHA256, bytes_to_unicode, clip_tokenizer

TEXTS = [
    "a photo of a cat",
    "An astronaut riding a horse on Mars!",
    "brain mri, 72 year old female, alzheimer's disease",
    "<ld-med> axial T1-weighted   scan, 3.5mm slices (CN)",
    "sks chest x-ray; no finding",
    "naïve café",
    "",
]


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return clip_tokenizer(tmp_path_factory.mktemp("clip-tok"))


def test_bpe_file_is_the_pinned_one():
    data = BPE.read()
    assert len(data) == 1_356_917 and hashlib.sha256(data).hexdigest() == BPE_SHA256


def test_vocabulary_size_special_tokens_and_positions(tokenizer):
    assert len(tokenizer) == 49408 and tokenizer.model_max_length == 77
    assert tokenizer.convert_tokens_to_ids(["<|startoftext|>", "<|endoftext|>"]) == [49406, 49407]
    assert tokenizer.pad_token_id == 49407 and tokenizer.bos_token_id == 49406 and tokenizer.eos_token_id == 49407
    byte_symbols = list(bytes_to_unicode().values())
    assert len(set(byte_symbols)) == 256
    assert tokenizer.convert_tokens_to_ids([byte_symbols[0], byte_symbols[0] + "</w>"]) == [0, 256]


def test_known_stable_diffusion_v1_4_ids(tokenizer):
    ids = tokenizer("a photo of a cat", padding="max_length", max_length=tokenizer.model_max_length,
                    truncation=True).input_ids
    assert ids == [49406, 320, 1125, 539, 320, 2368, 49407] + [49407] * 70
    assert tokenizer("an astronaut riding a horse").input_ids == [49406, 550, 18376, 6765, 320, 4558, 49407]
    long = tokenizer("cat " * 100, padding="max_length", max_length=77, truncation=True).input_ids
    assert len(long) == 77 and long[0] == 49406 and long[-1] == 49407


def test_same_ids_as_open_clip(tokenizer):
    open_clip = pytest.importorskip("open_clip")
    from open_clip.tokenizer import SimpleTokenizer

    ours = [tokenizer(t, padding="max_length", max_length=77, truncation=True).input_ids for t in TEXTS]
    theirs = open_clip.tokenize(TEXTS).tolist()  # padded with 0 instead of 49407
    for a, b in zip(ours, theirs, strict=True):
        n = b.index(49407) + 1
        assert a[:n] == b[:n] and set(a[n:]) <= {49407}
    simple = SimpleTokenizer()
    for text in TEXTS:
        assert tokenizer(text, add_special_tokens=False).input_ids == simple.encode(text)
