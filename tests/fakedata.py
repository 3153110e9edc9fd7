"""Small data files in the real formats, written by tests (no downloads)."""

import io
import pickle
import tarfile
from pathlib import Path
from typing import Any

import numpy as np

from lstsd.harness.data import cifar


def _pickle(obj) -> bytes:
    return pickle.dumps(obj, protocol=2)


def cifar_members(kind: str, n_train: int = 20, n_test: int = 10, seed: int = 0):
    """(members dict name -> bytes, train data, train labels, test data, test labels) in the real format."""
    rng = np.random.default_rng(seed)
    num_classes = 10 if kind == "cifar10" else 100
    train_x = rng.integers(0, 256, (n_train, 3072), dtype=np.uint8)
    test_x = rng.integers(0, 256, (n_test, 3072), dtype=np.uint8)
    train_y = rng.integers(0, num_classes, n_train).tolist()
    test_y = rng.integers(0, num_classes, n_test).tolist()
    members = {}
    if kind == "cifar10":
        for b, chunk in enumerate(np.array_split(np.arange(n_train), 5), start=1):
            members[f"data_batch_{b}"] = _pickle({
                b"batch_label": f"training batch {b} of 5".encode(), b"data": train_x[chunk],
                b"labels": [train_y[i] for i in chunk], b"filenames": [b"x.png"] * len(chunk)})
        members["test_batch"] = _pickle({b"batch_label": b"testing batch 1 of 1", b"data": test_x,
                                         b"labels": test_y, b"filenames": [b"x.png"] * n_test})
        members["batches.meta"] = _pickle({b"label_names": [n.encode() for n in cifar.CIFAR10_CLASSES]})
    else:
        for name, x, y in (("train", train_x, train_y), ("test", test_x, test_y)):
            members[name] = _pickle({b"batch_label": name.encode(), b"data": x, b"fine_labels": y,
                                     b"coarse_labels": [v // 5 for v in y], b"filenames": [b"x.png"] * len(y)})
        members["meta"] = _pickle({b"fine_label_names": [f"class{i:02d}".encode() for i in range(100)],
                                   b"coarse_label_names": [f"super{i:02d}".encode() for i in range(20)]})
    return members, train_x, np.array(train_y), test_x, np.array(test_y)


def write_cifar_tarball(path: Path, kind: str, members: dict[str, bytes]) -> None:
    folder = "cifar-10-batches-py" if kind == "cifar10" else "cifar-100-python"
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(f"{folder}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def write_vader(folder: Path) -> Path:
    """12 positive, 8 negative, 3 zero-scored rows; CRLF; a cp1252 byte; a tab inside a text."""
    rows = [f"p{i}\t{0.5 + i / 10:.2f}\tgood thing {i}" for i in range(12)]
    rows += [f"n{i}\t-{1 + i / 10:.2f}\tbad thing {i}" for i in range(8)]
    rows += ["z1\t0\tneutral one", "z2\t0.0\tneutral two", "z3\t-0.00\tneutral three"]
    data = "\r\n".join(rows).encode("utf-8")
    data += "\r\np_utf\t1.5\tclichés \u00a31000\r\n".encode("utf-8")
    data += b"n_cp\t-2.0\tna\xefve\tand tabbed\r\n\r\n"  # \xef alone is not UTF-8: cp1252 fallback
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "movieReviewSnippets_GroundTruth.txt"
    path.write_bytes(data)
    return path


def write_glue(root: Path) -> None:
    (root / "RTE").mkdir(parents=True)
    (root / "MRPC").mkdir()
    (root / "SST-2").mkdir()
    (root / "CoLA").mkdir()
    rte = "index\tsentence1\tsentence2\tlabel\n0\tA man sleeps.\tA person rests.\tentailment\n" \
          "1\tIt's \"raining\".\tIt is dry.\tnot_entailment\n2\tCats meow.\tDogs bark.\tnot_entailment\n"
    (root / "RTE" / "train.tsv").write_text(rte, encoding="utf-8")
    (root / "RTE" / "dev.tsv").write_text(rte.replace("Cats", "Birds"), encoding="utf-8")
    mrpc = ("\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\r\n"
            "1\t702876\t702977\tHe said \"it was fine.\tHe said it was fine.\r\n"  # a stray, unbalanced quote
            "0\t2108705\t2108831\tYucaipa owned \"Dominick's\" then.\tIt was sold in 1995 .\r\n"
            "1\t1330381\t1330521\tThe stock rose 5\" today.\tShares rose today.\r\n")
    (root / "MRPC" / "train.tsv").write_text(mrpc, encoding="utf-8", newline="")
    (root / "MRPC" / "dev.tsv").write_text(mrpc, encoding="utf-8", newline="")
    sst = "sentence\tlabel\nit 's a charming journey . \t1\nunfunny and \"dull\" \t0\n"
    (root / "SST-2" / "train.tsv").write_text(sst, encoding="utf-8")
    (root / "SST-2" / "dev.tsv").write_text(sst, encoding="utf-8")
    cola = "gj04\t1\t\tOur friends won't buy this analysis.\ngj04\t0\t*\tThey drank the pub.\n" \
           "gj04\t1\t\tThe \"sailors\" rode.\n"
    (root / "CoLA" / "train.tsv").write_text(cola, encoding="utf-8")
    (root / "CoLA" / "dev.tsv").write_text(cola, encoding="utf-8")


WORDNET_PARTS = {"noun": "n", "verb": "v", "adj": "a", "adv": "r"}


def write_wordnet(folder: Path, per_part: int = 12) -> Path:
    """``data.noun``, ``data.verb``, ``data.adj``, ``data.adv`` in WordNet 3.0's format (``wndb(5WN)``):
    a licence header, then ``per_part`` synsets per part of speech, each of two words (the second
    shared by two synsets in a row: a lemma's first synset gives its definition) and a gloss with
    quoted examples; the first adjective carries the position marker ``(a)``; the lemma ``common``
    is in every part of speech."""
    folder.mkdir(parents=True, exist_ok=True)
    header = "  1 This software and database is being provided to you, the LICENSEE, by  \n" \
             "  2 Princeton University under the following license.  \n"
    for pos, ss_type in WORDNET_PARTS.items():
        lines = [header]
        for k in range(per_part):
            first = f"{pos}_word_{k}" + ("(a)" if pos == "adj" and k == 0 else "")
            words = f"{first} 0 shared_{pos}_{k // 2} 0"
            gloss = f'the {pos} meaning number {k} of a thing; "an example of {pos} {k}"; "another one"'
            count = "02"
            if k == 1:                         # a lemma of every part of speech
                words, count = words + " common 0", "03"
            lines.append(f"{1000 + 100 * k:08d} 03 {ss_type} {count} {words} 000 | {gloss}  \n")
        (folder / f"data.{pos}").write_text("".join(lines), encoding="utf-8")
    return folder


def interrupt_in_third_epoch(trainer: Any, monkeypatch: Any) -> None:
    """Make ``trainer.fit()`` raise KeyboardInterrupt at its third evaluation: epoch index 2 trained,
    not yet checkpointed (work lost, as a kill there loses it)."""
    real_evaluate, calls = trainer.evaluate, {"n": 0}

    def crash_in_epoch_three() -> Any:
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real_evaluate()
    monkeypatch.setattr(trainer, "evaluate", crash_in_epoch_three)
