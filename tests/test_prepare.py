"""The prepare stage: cleaning, a train-only vocabulary, seeded stratified validation, exact re-runs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
from omegaconf import DictConfig
from tokenizers import Tokenizer

from rnnlab.composition import compose_config
from rnnlab.data.arrays import PreparedSplit
from rnnlab.data.download import extract_reviews
from rnnlab.data.prepare import prepare
from rnnlab.data.text import PAD_ID, UNK_ID, make_tokenizer, split_words
from tests.helpers.archives import review_members, write_archive
from tests.helpers.project import run_module

TINY = ["prepare.vocab_size=60", "prepare.min_frequency=1", "prepare.val_fraction=0.34"]


def settings(*overrides: str) -> DictConfig:
    """The `prepare` section of conf/ composed for the tiny archive."""
    return compose_config([*TINY, *overrides]).prepare


def run_prepare(tmp_path: Path, raw: Path, out: Path, *overrides: str):
    """`python -m rnnlab.data.prepare` as a user runs it, stats next to `out`, Hydra's own files kept apart."""
    return run_module(
        "rnnlab.data.prepare", f"paths.raw_dir={raw}", f"paths.prepared_dir={out}",
        f"paths.prepare_stats={out.parent / 'stats.json'}", f"hydra.run.dir={tmp_path / 'hydra'}", *TINY, *overrides,
        cwd=tmp_path,
    )


def assert_refused(result, *phrases: str) -> None:
    """Exit 1 with one `prepare: error:` line holding every phrase: no traceback."""
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("prepare: error: "), result.stderr
    for phrase in phrases:
        assert phrase in lines[0], result.stderr


def extract(tmp_path: Path, members: dict[str, bytes]) -> Path:
    archive = tmp_path / "a.tar.gz"
    write_archive(archive, members)
    raw = tmp_path / "raw"
    extract_reviews(archive, raw)
    return raw


@pytest.fixture
def prepared(tmp_path):
    raw = extract(tmp_path, review_members(test_extra="zyzzyva"))
    out, stats_path = tmp_path / "prepared", tmp_path / "stats.json"
    stats = prepare(raw, out, stats_path, settings(), workers=1)
    return out, stats, stats_path


def test_outputs_and_stats(prepared):
    out, stats, stats_path = prepared
    assert json.loads(stats_path.read_text()) == stats
    assert stats["train"]["reviews"] + stats["val"]["reviews"] == 12
    assert stats["test"] == {**stats["test"], "reviews": 12, "pos": 6, "neg": 6}
    assert stats["vocab_size"] == len(Tokenizer.from_file(str(out / "tokenizer.json")).get_vocab())
    assert stats["test"]["oov_rate"] > 0  # `zyzzyva` and other test-only words
    test = PreparedSplit.load(out / "test")
    assert test.tokens.dtype == np.int32 and isinstance(test.tokens, np.memmap)
    assert sorted(set(test.ratings.tolist())) == [1, 2, 3, 4, 7, 8, 9, 10]
    assert ((test.labels == 1) == (test.ratings >= 7)).all()
    assert int(test.lengths.sum()) == len(test.tokens)


def test_vocabulary_comes_from_train_split_only(prepared):
    out, _, _ = prepared
    tokenizer = Tokenizer.from_file(str(out / "tokenizer.json"))
    vocab = tokenizer.get_vocab()
    assert vocab["<pad>"] == PAD_ID and vocab["<unk>"] == UNK_ID
    assert "zyzzyva" not in vocab
    train_words = set()
    for k in range(len(train := PreparedSplit.load(out / "train"))):
        train_words.update(train.review(k).tolist())
    assert set(vocab.values()) - {PAD_ID, UNK_ID} <= train_words  # nothing from val or test


def test_markup_unicode_and_case_are_normalised(prepared):
    out, _, _ = prepared
    tokenizer = Tokenizer.from_file(str(out / "tokenizer.json"))
    assert tokenizer.encode("A GREAT<br />film").tokens == ["a", "great", "film"]
    assert split_words("A GREAT<br />film") == ["a", "great", "film"]
    assert "br" not in tokenizer.get_vocab()
    # NFKC: the full-width letters and the ligature fold to plain ones.
    assert split_words("ＧＲＥＡＴ ﬁlm") == ["great", "film"]


@pytest.mark.parametrize(
    "text",
    [
        "Hello, world!! It's “quoted” — and… done.",
        "Ｆｕｌｌ ｗｉｄｔｈ ﬁ ligature, café, naïve, ÉCOLE",
        "tabs\tand\nnewlines\u00a0nbsp\u2003em-space",
        "emoji 🎬 and 映画 and ¿qué? ¡sí! «guillemets»",
        "<br/>tight<br>tags<BR />upper",
        "under_score and 3.5/10 stars; e-mail@x.com",
    ],
)
def test_python_split_matches_hf_tokenizer(text):
    words = split_words(text)
    tokenizer = make_tokenizer({"<pad>": 0, "<unk>": 1, **{w: i + 2 for i, w in enumerate(dict.fromkeys(words))}})
    assert tokenizer.encode(text, add_special_tokens=False).tokens == words


def test_validation_split_is_stratified_and_seeded(tmp_path):
    raw = extract(tmp_path, review_members())
    a = prepare(raw, tmp_path / "a", tmp_path / "a.json", settings(), workers=1)
    prepare(raw, tmp_path / "b", tmp_path / "b.json", settings("prepare.split_seed=1"), workers=1)
    assert a["val"]["pos"] == a["val"]["neg"] == 2
    val_a = PreparedSplit.load(tmp_path / "a" / "val")
    val_b = PreparedSplit.load(tmp_path / "b" / "val")
    assert not np.array_equal(val_a.tokens, val_b.tokens)  # another seed holds out other reviews


def test_rerun_is_byte_identical(tmp_path):
    raw = extract(tmp_path, review_members())
    prepare(raw, tmp_path / "a", tmp_path / "a.json", settings(), workers=1)
    prepare(raw, tmp_path / "b", tmp_path / "b.json", settings(), workers=2)
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert len(files) == 13
    for f in files:
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()


@pytest.mark.parametrize(
    ("content", "phrase"),
    [(b"   <br />  ", "empty review"), (b"great film \xff\xfe broken", "not valid UTF-8")],
)
def test_bad_review_fails_cleanly(tmp_path, content, phrase):
    members = review_members()
    members["aclImdb/train/pos/3_10.txt"] = content
    raw = extract(tmp_path, members)
    out = tmp_path / "data" / "prepared"
    out.mkdir(parents=True)
    (out / "keep.txt").write_text("earlier output")
    result = run_prepare(tmp_path, raw, out)
    assert_refused(result, phrase, "3_10.txt")
    assert (out / "keep.txt").read_text() == "earlier output"  # nothing written over
    assert not (tmp_path / "data" / "stats.json").exists()
    assert sorted(p.name for p in out.parent.iterdir()) == ["prepared"]


def test_stray_file_in_a_review_folder_fails_cleanly(tmp_path):
    raw = extract(tmp_path, review_members())
    (raw / "train" / "pos" / "notes.txt").write_text("my notes")
    out = tmp_path / "data" / "prepared"
    result = run_prepare(tmp_path, raw, out)
    assert_refused(result, "notes.txt", "<id>_<rating>.txt")
    assert not out.parent.exists() or list(out.parent.iterdir()) == []


def test_empty_review_folder_is_refused(tmp_path):
    raw = extract(tmp_path, review_members())
    for review in (raw / "test" / "neg").iterdir():
        review.unlink()
    out = tmp_path / "data" / "prepared"
    result = run_prepare(tmp_path, raw, out)
    assert_refused(result, "test/neg", "no reviews")
    assert not out.parent.exists() or list(out.parent.iterdir()) == []


@pytest.mark.parametrize(
    ("override", "phrase"),
    [
        ("prepare.val_fraction=1.5", "prepare.val_fraction=1.5"),
        ("prepare.vocab_size=2", "prepare.vocab_size=2"),
        ("prepare.min_frequency=0.5", "prepare.min_frequency=0.5"),
        ("~prepare.split_seed", "lack split_seed"),
    ],
)
def test_bad_settings_fail_cleanly(tmp_path, override, phrase):
    raw = extract(tmp_path, review_members())
    out = tmp_path / "data" / "prepared"
    result = run_prepare(tmp_path, raw, out, override)
    assert_refused(result, phrase)
    assert not out.parent.exists()


def test_settings_come_from_the_config(tmp_path):
    """The entry point reads conf/'s prepare section: the vocabulary is as large as prepare.vocab_size allows."""
    raw = extract(tmp_path, review_members())
    out = tmp_path / "data" / "prepared"
    result = run_prepare(tmp_path, raw, out, "prepare.vocab_size=10")
    assert result.returncode == 0, result.stderr
    assert "vocabulary: 10 tokens" in result.stdout
    assert json.loads((out.parent / "stats.json").read_text())["vocab_size"] == 10


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL])
def test_readers_end_with_a_killed_prepare(tmp_path, signum):
    """prepare's reader processes die with it (issue 21: one outlived a SIGTERM of its parent, waiting on the
    task queue forever, and took kill -9)."""
    members = review_members()
    # One long review (a million words) keeps its reader busy for a while: the pool is alive when the parent dies.
    members["aclImdb/train/pos/3_10.txt"] = b"great film " * 500_000
    raw = extract(tmp_path, members)
    tiny = {"vocab_size": 60, "min_frequency": 1, "val_fraction": 0.34, "split_seed": 0}
    code = (f"from pathlib import Path; from rnnlab.data.prepare import prepare; "
            f"prepare(Path({str(raw)!r}), Path({str(tmp_path / 'out')!r}), Path({str(tmp_path / 's.json')!r}), "
            f"{tiny!r}, workers=2)")
    parent = subprocess.Popen([sys.executable, "-c", code], cwd=tmp_path)
    process, readers = psutil.Process(parent.pid), []
    try:
        deadline = time.monotonic() + 120
        while len(process.children()) < 2:  # the pool forks its two readers one after the other
            assert parent.poll() is None, "prepare ended before its readers were seen"
            assert time.monotonic() < deadline, "no readers started in 120 s"
            time.sleep(0.001)
        # Held still, the parent cannot shut its pool down in between: its readers are alive when the signal lands.
        process.suspend()
        readers = [p for p in process.children() if p.status() != psutil.STATUS_ZOMBIE]
        assert len(readers) == 2, readers
        os.kill(parent.pid, signum)
        process.resume()  # a SIGTERM to a stopped process waits for it to run again
        assert parent.wait(timeout=60) == -signum
        _, alive = psutil.wait_procs(readers, timeout=10)  # zombies count as gone: the kernel killed them
        alive = [p for p in alive if p.status() != psutil.STATUS_ZOMBIE]
        assert not alive, f"readers outlived prepare: {[p.pid for p in alive]}"
    finally:  # leave no process behind the test, whatever it found
        for p in [process, *readers, *(process.children() if process.is_running() else [])]:
            if p.is_running():
                p.kill()
        parent.wait(timeout=60)
    assert not (tmp_path / "out").exists() and not (tmp_path / "s.json").exists()
