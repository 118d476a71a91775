"""The unpadded BERT forward (llmrec.text.packed) against the HF model's padded forward."""

import json
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

from llmrec.text import TextEncoder  # noqa: E402
from tolerances import assert_within, network_tolerance  # noqa: E402
from llmrec.text.packed import (  # noqa: E402
    PackedBertEncoder, _positions, packed_encoder_for, packed_token_ids)
from llmrec.text.testing import WORDS, save_tiny_bert  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return save_tiny_bert(tmp_path_factory.mktemp("tiny-bert"), hidden_size=48, num_heads=4,
                          num_layers=3)


@pytest.fixture(scope="module")
def model(tiny_dir):
    return transformers.AutoModel.from_pretrained(str(tiny_dir)).eval()


def _mixed_texts(n, seed, longest=40):
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=int(rng.integers(1, longest)))) for _ in range(n)]


def _hf_hidden(model, sequences):
    """Each sequence's real-token hidden states from one right-padded HF forward."""
    width = max(len(s) for s in sequences)
    ids = torch.zeros(len(sequences), width, dtype=torch.long)
    mask = torch.zeros(len(sequences), width, dtype=torch.long)
    for row, sequence in enumerate(sequences):
        ids[row, :len(sequence)] = torch.tensor(sequence)
        mask[row, :len(sequence)] = 1
    with torch.no_grad():
        hidden = model(input_ids=ids, attention_mask=mask).last_hidden_state
    return [hidden[row, :len(s)].double().numpy() for row, s in enumerate(sequences)]


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_packed_hidden_states_match_the_padded_hf_forward(model, seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 20))
    lengths = rng.integers(2, 60, size=n)
    if seed == 2:
        lengths = np.sort(np.repeat(lengths[:4], 3))[::-1]   # long runs of equal lengths
    if seed == 3:
        lengths = np.full(n, lengths[0])                      # one length: no padding, no mask
    vocab = model.config.vocab_size
    sequences = [rng.integers(0, vocab, size=int(length)).tolist() for length in lengths]
    packed = packed_encoder_for(model)
    assert isinstance(packed, PackedBertEncoder)
    flat = torch.from_numpy(packed_token_ids(sequences, np.arange(n), lengths))
    with torch.no_grad():
        hidden = packed(flat, lengths).double().numpy()
    expected = np.concatenate(_hf_hidden(model, sequences))
    assert hidden.shape == expected.shape
    assert_within(hidden, expected, network_tolerance(model))


def test_position_and_packing_helpers():
    lengths = np.array([5, 5, 3, 3, 3, 2, 5])
    expected = np.concatenate([np.arange(n) for n in lengths])
    np.testing.assert_array_equal(_positions(lengths), expected)
    ids = [[1, 2], [3], [4, 5, 6]]
    np.testing.assert_array_equal(packed_token_ids(ids, np.array([2, 0]), np.array([3, 2])),
                                  [4, 5, 6, 1, 2])


@pytest.mark.parametrize("pooling", ["mean", "cls", "last"])
@pytest.mark.parametrize("normalize", [True, False])
def test_encoder_vectors_equal_with_and_without_packing(tiny_dir, pooling, normalize):
    packed = TextEncoder(tiny_dir, device="cpu", pooling=pooling, normalize=normalize,
                         batch_size=7)
    plain = TextEncoder(tiny_dir, device="cpu", pooling=pooling, normalize=normalize,
                        batch_size=7)
    assert packed._packed is not None
    plain._packed = None
    texts = _mixed_texts(40, seed=3, longest=120)
    assert_within(packed.encode(texts), plain.encode(texts), network_tolerance(plain._model))


def test_bfloat16_packed_path_stays_close_to_float32(tiny_dir):
    fp32 = TextEncoder(tiny_dir, device="cpu")
    bf16 = TextEncoder(tiny_dir, device="cpu", dtype="bfloat16")
    assert bf16._packed is not None and bf16.dtype == "bfloat16"
    texts = _mixed_texts(50, seed=4, longest=100)
    a, b = fp32.encode(texts), bf16.encode(texts)
    assert b.dtype == np.float32
    # quality, not rounding: bfloat16 keeps 8 bits, a cosine of 0.99 or better
    assert np.sum(a * b, axis=1).min() >= 0.99


def test_other_architectures_fall_back_to_the_hf_forward(tiny_dir, tmp_path):
    # A DistilBERT next to the same tokenizer: not handled, so the HF forward runs.
    config = transformers.DistilBertConfig(vocab_size=len(json.loads(
        (tiny_dir / "tokenizer.json").read_text())["model"]["vocab"]), dim=32, n_layers=2,
        n_heads=2, hidden_dim=64, max_position_embeddings=128)
    torch.manual_seed(0)
    distil = transformers.DistilBertModel(config).eval()
    assert packed_encoder_for(distil) is None
    directory = tmp_path / "distil"
    directory.mkdir()
    for name in os.listdir(tiny_dir):
        if name.startswith(("tokenizer", "special_tokens")):
            (directory / name).write_bytes((tiny_dir / name).read_bytes())
    distil.save_pretrained(str(directory))
    encoder = TextEncoder(directory, device="cpu", batch_size=3)
    assert encoder._packed is None
    texts = _mixed_texts(9, seed=5)
    vectors = encoder.encode(texts)
    with torch.no_grad():
        for text, vector in zip(texts, vectors):
            ids = encoder._tokenizer(text, return_tensors="pt")["input_ids"]
            expected = distil(input_ids=ids).last_hidden_state[0].mean(0)
            expected = (expected / expected.norm()).numpy()
            assert_within(vector, expected, network_tolerance(distil))


@pytest.mark.parametrize("change", [{"hidden_act": "relu"}, {"is_decoder": True},
                                    {"hidden_act": "gelu_new"}])
def test_unhandled_bert_settings_fall_back(change):
    config = transformers.BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1,
                                     num_attention_heads=2, intermediate_size=32, **change)
    assert packed_encoder_for(transformers.BertModel(config)) is None


def test_objects_that_are_not_models_fall_back():
    assert packed_encoder_for(object()) is None
    assert packed_encoder_for(torch.nn.Linear(2, 2)) is None
