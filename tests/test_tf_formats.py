"""Google's checkpoint formats, read without TensorFlow, against fixtures TensorFlow wrote.

The fixtures in tests/fixtures/tf/ were written once by tests/fixtures/make_tf_fixtures.py with
TensorFlow 2.20 and tf-models-official 2.20. Each `NAME.npz` holds the tensors TF read back
(`tf.train.load_checkpoint`) and the outputs TF computed with Google's model code (the Model
Garden's BertPretrainerV2 / MobileBERT pretrainer, loaded through the Model Garden's own TF1→TF2
converters), for the batch stored beside them.
"""

import json
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

from flaxbert.checkpoints import google
from flaxbert.checkpoints.tf_bundle import (
    Bundle,
    BundleError,
    crc32c,
    decode_message,
    masked_crc32c,
    read_object_graph,
)
from flaxbert.heads import Model
from flaxbert.pretrained import from_pretrained

FIXTURES = Path(__file__).parent / "fixtures" / "tf"
TOL = 1e-4  # the tolerance on outputs (fp32)

# fixture name → bundle prefix (relative to FIXTURES)
BUNDLES = {
    "bert_tf1": "bert_tf1/bert_model.ckpt",
    "bert_tf1_sharded": "bert_tf1_sharded/bert_model.ckpt",
    "bert_hub_v1": "bert_hub_v1/variables/variables",
    "bert_tf2_savedmodel": "bert_tf2_savedmodel/variables/variables",
    "mobilebert_tf1": "mobilebert_tf1/mobilebert_variables.ckpt",
}
BERT_FOLDERS = ["bert_tf1", "bert_tf1_sharded", "bert_hub_v1", "bert_tf2_savedmodel"]


def _reference(name):
    return np.load(FIXTURES / f"{name}.npz")


def _tf_arrays(name):
    """What TF read back for fixture `name` (subset fixtures point at the one holding them)."""
    ref = _reference(name)
    if "same_values_as" in ref.files:
        full = _reference(str(ref["same_values_as"]))
        return {k: full[k] for k in ref["names"]}
    return {k: ref[k] for k in ref.files if k.startswith(("var/", "str/"))}


# --- the bundle reader --------------------------------------------------------------------------------
def test_crc32c_known_values():
    # RFC 3720 (iSCSI) B.4 test vectors and the standard check value of CRC-32C.
    assert crc32c(b"123456789") == 0xE3069283
    assert crc32c(bytes(32)) == 0x8A9136AA
    assert crc32c(bytes([0xFF] * 32)) == 0x62A8AB43
    assert crc32c(bytes(range(32))) == 0x46DD794E
    data = np.random.default_rng(0).integers(0, 256, 300_007, dtype=np.uint8).tobytes()
    # the lane-parallel numpy path agrees with extending byte by byte in pieces
    assert crc32c(data) == crc32c(data[100_000:], crc32c(data[:100_000]))
    assert masked_crc32c(b"") == 0xA282EAD8  # mask(0) = delta


@pytest.mark.parametrize("name", list(BUNDLES))
def test_bundle_is_bit_identical_to_what_tf_read(name):
    bundle = Bundle(FIXTURES / BUNDLES[name])
    expected = _tf_arrays(name)
    names = set(bundle.variables())
    assert names == {k.split("/", 1)[1] for k in expected}, "different tensor lists"
    for key, want in expected.items():
        got = bundle.read(key.split("/", 1)[1])  # verifies TF's crc32c on the way
        if key.startswith("str/"):
            assert got == want.tobytes(), key
        else:
            assert got.dtype == want.dtype and got.shape == want.shape, key
            assert np.array_equal(got, want), key


def test_sharded_bundle_uses_both_shards():
    bundle = Bundle(FIXTURES / BUNDLES["bert_tf1_sharded"])
    assert bundle.num_shards == 2
    assert {e.shard_id for e in bundle.entries.values()} == {0, 1}


def test_bundle_metadata_and_dtypes():
    bundle = Bundle(FIXTURES / "bert_tf1")  # the folder resolves to its single checkpoint
    variables = bundle.variables()
    assert variables["bert/embeddings/word_embeddings"] == (np.dtype("<f4"), (120, 32))
    assert variables["global_step"] == (np.dtype("<i8"), ())
    assert int(bundle.read("global_step")) == 12345
    assert "bert/encoder/layer_0/attention/self/query/kernel/adam_m" in variables


def test_object_graph_names_tf2_variables():
    bundle = Bundle(FIXTURES / "bert_tf2_savedmodel")
    graph = read_object_graph(bundle)
    names = {info["full_name"] for info in graph.values()}
    assert "transformer/layer_1/self_attention/query/kernel" in names
    assert "bert/cls/predictions/transform/LayerNorm/gamma" in names
    key = next(k for k, v in graph.items() if v["full_name"] == "word_embeddings/embeddings")
    assert key.endswith("/.ATTRIBUTES/VARIABLE_VALUE")
    assert bundle.read(key).shape == (120, 32)


def test_decode_message_varints_and_nesting():
    inner = bytes([0x08, 0x96, 0x01])  # field 1 = 150
    msg = bytes([0x12, len(inner)]) + inner + bytes([0x35]) + struct.pack("<I", 7)
    decoded = decode_message(msg)
    assert decode_message(decoded[2][0]) == {1: [150]} and decoded[6] == [7]
    with pytest.raises(ValueError):
        decode_message(bytes([0x08, 0x96]))  # truncated varint


# --- corrupt inputs are clear errors -----------------------------------------------------------------
def _copy(tmp_path, name="bert_tf1"):
    dst = tmp_path / name
    shutil.copytree(FIXTURES / name, dst)
    return dst


def test_corrupt_index_is_an_error(tmp_path):
    d = _copy(tmp_path)
    index = d / "bert_model.ckpt.index"
    data = bytearray(index.read_bytes())
    data[40] ^= 0xFF  # inside the first data block: its crc no longer matches
    index.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"bert_model\.ckpt\.index.*corrupt"):
        Bundle(d / "bert_model.ckpt")
    index.write_bytes(bytes(data[:-10]))  # truncated: the footer magic is gone
    with pytest.raises(BundleError, match=r"bert_model\.ckpt\.index.*magic"):
        Bundle(d / "bert_model.ckpt")


def test_truncated_data_shard_is_an_error(tmp_path):
    d = _copy(tmp_path)
    shard = d / "bert_model.ckpt.data-00000-of-00001"
    shard.write_bytes(shard.read_bytes()[:1000])
    bundle = Bundle(d / "bert_model.ckpt")
    last = max(bundle.entries.values(), key=lambda e: e.offset)
    with pytest.raises(BundleError, match=r"data-00000-of-00001.*truncated"):
        bundle.read(last.name)


def test_wrong_crc_is_an_error(tmp_path):
    d = _copy(tmp_path)
    shard = d / "bert_model.ckpt.data-00000-of-00001"
    bundle = Bundle(d / "bert_model.ckpt")
    entry = bundle.entries["bert/embeddings/word_embeddings"]
    data = bytearray(shard.read_bytes())
    data[entry.offset + 5] ^= 0x01  # one flipped bit in one float
    shard.write_bytes(bytes(data))
    bundle = Bundle(d / "bert_model.ckpt")
    with pytest.raises(BundleError, match=r"data-00000-of-00001.*checksum mismatch.*word_emb"):
        bundle.read("bert/embeddings/word_embeddings")
    assert bundle.read("bert/embeddings/word_embeddings", verify=False).shape == (120, 32)
    with pytest.raises(BundleError, match="checksum mismatch"):
        google.load_google_checkpoint(d)


def test_missing_shard_is_an_error(tmp_path):
    d = _copy(tmp_path, "bert_tf1_sharded")
    (d / "bert_model.ckpt.data-00001-of-00002").unlink()
    with pytest.raises(BundleError, match=r"data-00001-of-00002.*missing"):
        google.load_google_checkpoint(d)


def test_missing_vocab_is_an_error(tmp_path):
    d = _copy(tmp_path)
    (d / "vocab.txt").unlink()
    with pytest.raises(FileNotFoundError, match="vocab.txt"):
        from_pretrained(d)
    h = _copy(tmp_path, "bert_hub_v1")
    (h / "assets" / "vocab.txt").unlink()
    with pytest.raises(FileNotFoundError, match="vocab.txt"):
        google.from_pretrained(h, config=FIXTURES / "bert_tf1" / "bert_config.json")


def test_unmapped_tensor_is_an_error_listing_it(tmp_path):
    d = _copy(tmp_path)
    config = json.loads((d / "bert_config.json").read_text())
    config["num_hidden_layers"] = 1  # layer_1's tensors are now unexplained
    (d / "bert_config.json").write_text(json.dumps(config))
    with pytest.raises(google.ConversionError, match=r"bert/encoder/layer_1/attention/self/key"):
        google.load_google_checkpoint(d)


def test_hub_module_needs_a_config():
    with pytest.raises(ValueError, match="pass config="):
        google.load_tfhub_module(FIXTURES / "bert_hub_v1")


# --- outputs equal TensorFlow's -------------------------------------------------------------------
def _run(model, params, ref):
    out = model.apply(
        {"params": params},
        ref["input_word_ids"],
        ref["input_mask"],
        ref["input_type_ids"],
        ref["masked_lm_positions"],
    )
    return {k: np.asarray(v) for k, v in out.items() if not isinstance(v, list)}


def _compare(out, ref, keys):
    mask = ref["input_mask"][..., None]
    for key in keys:
        diff = np.abs(out[key] - ref[key])
        if key == "sequence_output":  # padded positions are not defined by either side
            diff = diff * mask
        assert diff.max() <= TOL, f"{key}: max abs diff {diff.max():.2e}"


@pytest.mark.parametrize("name", BERT_FOLDERS)
def test_bert_outputs_match_tensorflow(name):
    folder = FIXTURES / name
    assert (
        google.detect_format(folder)
        == {
            "bert_tf1": "google",
            "bert_tf1_sharded": "google",
            "bert_hub_v1": "tfhub_v1",
            "bert_tf2_savedmodel": "tf2",
        }[name]
    )
    if name == "bert_hub_v1":
        # a hub module records no config: give the checkpoint's bert_config.json
        model, params, tok = google.from_pretrained(
            folder, config=FIXTURES / "bert_tf1" / "bert_config.json"
        )
    else:
        model, params, tok = from_pretrained(folder)
    assert tok.vocab_size == 120
    ref = _reference(name)
    expected_heads = {"bert_hub_v1": ("mlm",), "bert_tf2_savedmodel": ("mlm",)}.get(
        name, ("mlm", "nsp")
    )
    assert model.heads == expected_heads and model.pooler
    _compare(
        _run(model, params, ref),
        ref,
        [
            k
            for k in ("sequence_output", "pooled_output", "mlm_logits", "nsp_logits")
            if k in ref.files
        ],
    )


def test_google_gelu_is_the_tanh_form():
    # google-research/bert modeling.py gelu() is the tanh approximation; with the exact erf
    # form the outputs are measurably off (≈7e-4 here), so the loader must name it gelu_new.
    config, heads, params = google.load_google_checkpoint(FIXTURES / "bert_tf1")
    assert config.hidden_act == "gelu_new"
    ref = _reference("bert_tf1")
    exact = _run(Model(config.replace(hidden_act="gelu"), heads=heads), params, ref)
    assert np.abs(exact["mlm_logits"] - ref["mlm_logits"]).max() > 10 * TOL


def test_mobilebert_outputs_match_tensorflow():
    pytest.importorskip("flaxbert.mobilebert")
    model, params, _ = from_pretrained(FIXTURES / "mobilebert_tf1")
    assert model.config.model_type == "mobilebert" and model.heads == ("mlm", "nsp")
    ref = _reference("mobilebert_tf1")
    _compare(
        _run(model, params, ref),
        ref,
        ["sequence_output", "pooled_output", "mlm_logits", "nsp_logits"],
    )


# --- conversion to HF ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["bert_tf1", "bert_tf2_savedmodel"])
def test_convert_to_hf_loads_in_transformers(name, tmp_path):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from flaxbert.checkpoints.convert import convert

    out = convert(FIXTURES / name, tmp_path / "hf", to="hf")
    cls = transformers.BertForPreTraining if name == "bert_tf1" else transformers.BertForMaskedLM
    model, info = cls.from_pretrained(out, output_loading_info=True)
    assert not info["missing_keys"] and not info["mismatched_keys"]
    # HF's BertForMaskedLM has no pooler: the TF Hub encoder's pooler is the only extra there
    allowed = (
        set() if name == "bert_tf1" else {"bert.pooler.dense.weight", "bert.pooler.dense.bias"}
    )
    assert set(info["unexpected_keys"]) <= allowed
    ref = _reference(name)
    with torch.no_grad():
        o = model.eval()(
            input_ids=torch.tensor(ref["input_word_ids"]).long(),
            attention_mask=torch.tensor(ref["input_mask"]).long(),
            token_type_ids=torch.tensor(ref["input_type_ids"]).long(),
        )
    logits = o.prediction_logits if name == "bert_tf1" else o.logits
    gathered = np.take_along_axis(logits.numpy(), ref["masked_lm_positions"][..., None], axis=1)
    assert np.abs(gathered - ref["mlm_logits"]).max() <= TOL
    if name == "bert_tf1":
        assert np.abs(o.seq_relationship_logits.numpy() - ref["nsp_logits"]).max() <= TOL
    else:  # the encoder's own outputs through BertModel (pooler included)
        base = transformers.BertModel.from_pretrained(out).eval()
        with torch.no_grad():
            b = base(
                input_ids=torch.tensor(ref["input_word_ids"]).long(),
                attention_mask=torch.tensor(ref["input_mask"]).long(),
                token_type_ids=torch.tensor(ref["input_type_ids"]).long(),
            )
        assert np.abs(b.pooler_output.numpy() - ref["pooled_output"]).max() <= TOL
    assert (out / "vocab.txt").is_file()


def test_convert_to_orbax_round_trips(tmp_path):
    import orbax.checkpoint as ocp

    from flaxbert.checkpoints.convert import convert
    from flaxbert.params import flatten

    out = convert(FIXTURES / "bert_tf1", tmp_path / "orbax", to="orbax")
    with ocp.StandardCheckpointer() as ckptr:
        restored = ckptr.restore((out / "params").resolve())
    _, _, params = google.load_google_checkpoint(FIXTURES / "bert_tf1")
    a, b = flatten(restored), flatten(params)
    assert set(a) == set(b)
    assert all(np.array_equal(np.asarray(a[k]), b[k]) for k in a)
    assert json.loads((out / "flaxbert.json").read_text())["heads"] == ["mlm", "nsp"]
