"""WordNet 3.0 definitions (a fake data.* set in the real format, via $LSTSD_WORDNET) and the forgetting probe."""

from __future__ import annotations

import pytest

from fakedata import write_vader, write_wordnet
from lstsd.harness import cli
from lstsd.harness.errors import DataNotFoundError
from lstsd.harness.text.vader import probe_sentences
from lstsd.harness.text.wordnet import definition_examples, prompt_of, read_definitions, wordnet_dir


@pytest.fixture
def wordnet(tmp_path, monkeypatch):
    folder = write_wordnet(tmp_path / "wordnet")
    monkeypatch.setenv("LSTSD_WORDNET", str(folder))
    return folder


def test_the_parser_reads_each_lemma_s_first_definition_without_the_quoted_examples(wordnet):
    rows = read_definitions("adj")
    assert wordnet_dir() == wordnet
    assert rows[:3] == [("adj word 0", "adj", "the adj meaning number 0 of a thing"),   # marker (a) dropped
                        ("shared adj 0", "adj", "the adj meaning number 0 of a thing"),
                        ("adj word 1", "adj", "the adj meaning number 1 of a thing")]
    # "shared adj 0" is also in synset 1: its definition stays synset 0's, the first in the file
    assert sum(lemma == "shared adj 0" for lemma, _, _ in rows) == 1
    assert all('"' not in d and "example" not in d for _, _, d in rows)
    assert len(read_definitions("noun", limit=4)) == 4
    assert prompt_of("common", "adv") == "Define the word 'common' (adverb)."


def test_the_split_is_disjoint_by_lemma_and_the_seed_fixes_the_draw(wordnet):
    a = definition_examples(train_size=20, heldout_size=8, seed=3)
    assert {r[0] for r in a.train}.isdisjoint({r[0] for r in a.heldout})
    # "common" is a lemma of every part of speech: all its rows are on one side
    sides = {("train" if r in a.train else "heldout") for r in a.train + a.heldout if r[0] == "common"}
    assert len(sides) <= 1
    b = definition_examples(train_size=20, heldout_size=8, seed=3)
    c = definition_examples(train_size=20, heldout_size=8, seed=4)
    assert (a.train, a.heldout) == (b.train, b.heldout) and (a.train, a.heldout) != (c.train, c.heldout)
    # where the data came from, with a checksum of what was parsed (the same for the same files)
    assert a.source["origin"] == "$LSTSD_WORDNET" and a.source["path"] == str(wordnet)
    assert a.source["files"] == [str(wordnet / f"data.{p}") for p in ("noun", "verb", "adj", "adv")]
    assert len(a.source["sha256"]) == 64 and a.source["sha256"] == c.source["sha256"]
    with pytest.raises(ValueError, match="asked for 500 training and 8 held-out definitions"):
        definition_examples(train_size=500, heldout_size=8)


def test_missing_wordnet_names_the_debian_package(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LSTSD_WORDNET", str(tmp_path / "nowhere"))
    with pytest.raises(DataNotFoundError, match="apt-get install wordnet-base"):
        wordnet_dir()
    config = tmp_path / "lm.yaml"
    config.write_text("dataset: wordnet_definitions\nmodel: tiny-llama\nmethod: vanilla\nepochs: 1\n")
    assert cli.main(["train", "--config", str(config), "--set", f"out_dir={tmp_path / 'runs'}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "WordNet 3.0 is not installed" in err[0] and "wordnet-base" in err[0]


def test_the_probe_is_a_fixed_draw_of_distinct_sentences(tmp_path):
    write_vader(tmp_path / "vader")
    sentences, path = probe_sentences(5, subset="movies", data_dir=tmp_path / "vader")
    assert path.name == "movieReviewSnippets_GroundTruth.txt" and len(set(sentences)) == 5
    assert probe_sentences(5, subset="movies", data_dir=tmp_path / "vader")[0] == sentences
    with pytest.raises(ValueError, match="asked for 99 probe sentences"):
        probe_sentences(99, subset="movies", data_dir=tmp_path / "vader")
    with pytest.raises(DataNotFoundError, match="nytEditorialSnippets"):
        probe_sentences(5, data_dir=tmp_path / "vader")
