"""DVC stage `prepare`: tokenize the extracted reviews into train / val / test arrays and a vocabulary.

The vocabulary is learned from the train split only (validation carved out first), so no word seen
only in validation or test can enter it. Settings: the config's `prepare` section. Outputs, written to a
temporary folder and renamed into place:

    <paths.prepared_dir>/tokenizer.json              the tokenizer, cleaning rules included
    <paths.prepared_dir>/{train,val,test}/*.npy      token ids at full length, lengths, labels, ratings
    <paths.prepare_stats>                            counts, length percentiles, vocabulary size, OOV rates

    python -m rnnlab.data.prepare [prepare.vocab_size=...]
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import shutil
import tempfile
from collections import defaultdict
from collections.abc import Mapping
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig

from rnnlab.cli import UserError, hydra_app
from rnnlab.data.arrays import PreparedSplit
from rnnlab.data.download import LABELS, REVIEW_NAME, DataError
from rnnlab.data.text import UNK_ID, build_vocab, make_tokenizer, split_words
from rnnlab.processes import die_with_parent

log = logging.getLogger(__name__)

PERCENTILES = (50, 90, 95, 99)
SPLITS = ("train", "val", "test")
SETTING_KEYS = ("vocab_size", "min_frequency", "val_fraction", "split_seed")


def list_reviews(folder: Path) -> tuple[list[Path], np.ndarray, np.ndarray]:
    """Review files of one split in a fixed order (label, then review id), with labels (1 = pos) and ratings."""
    paths, labels, ratings = [], [], []
    for label_index, label in enumerate(LABELS):
        label_dir = folder / label
        if not label_dir.is_dir():
            raise DataError(f"{label_dir} is missing: re-run the download stage")
        reviews = []
        for path in label_dir.iterdir():
            match = REVIEW_NAME.match(path.name)
            if not match or not path.is_file():
                raise DataError(f"{path} is not a review (<id>_<rating>.txt): remove it or re-run the download stage")
            reviews.append((int(match.group(1)), int(match.group(2)), path))
        if not reviews:
            raise DataError(f"{label_dir} holds no reviews: re-run the download stage")
        for _, rating, path in sorted(reviews):
            paths.append(path)
            labels.append(label_index)
            ratings.append(rating)
    return paths, np.array(labels, dtype=np.int8), np.array(ratings, dtype=np.int8)


def read_review(path: Path) -> str:
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{path} is not valid UTF-8 ({e.reason} at byte {e.start})") from e
    return text


def encode_locally(paths: list[Path]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Worker: the words of these reviews as ids into a chunk-local word list (ids, lengths, words).

    Local ids let workers run before the vocabulary exists: the parent counts words with bincount and
    then maps local ids to vocabulary ids with one array lookup, so no review is read twice.
    """
    local: defaultdict[str, int] = defaultdict()
    local.default_factory = local.__len__  # a new word gets the next free id
    ids: list[int] = []
    lengths = np.empty(len(paths), dtype=np.int32)
    for k, path in enumerate(paths):
        words = split_words(read_review(path))
        if not words:
            raise DataError(f"{path} is an empty review")
        ids.extend(map(local.__getitem__, words))
        lengths[k] = len(words)
    return np.array(ids, dtype=np.int32), lengths, list(local)


def encode_all(paths: list[Path], workers: int) -> list[tuple[np.ndarray, np.ndarray, list[str]]]:
    """`encode_locally` over chunks of `paths`, in order, on `workers` processes."""
    size = -(-len(paths) // (4 * workers))
    chunks = [paths[i : i + size] for i in range(0, len(paths), size)]
    if workers == 1:
        return [encode_locally(chunk) for chunk in chunks]
    # Each reader ends with this process: an orphaned one (its parent killed) would wait on the task queue forever.
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"), initializer=die_with_parent,
                             initargs=(os.getpid(),)) as pool:
        return list(pool.map(encode_locally, chunks))


def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (kept, held out): `fraction` of each label held out, chosen by `seed`; both sorted."""
    rng = np.random.default_rng(seed)
    held_out = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        held_out.append(rng.permutation(members)[: max(1, round(fraction * len(members)))])
    held = np.sort(np.concatenate(held_out))
    kept = np.setdiff1d(np.arange(len(labels)), held)
    return kept, held


def select(tokens: np.ndarray, lengths: np.ndarray, reviews: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The tokens and lengths of the chosen reviews, in order."""
    mask = np.zeros(len(lengths), dtype=bool)
    mask[reviews] = True
    return tokens[np.repeat(mask, lengths)], lengths[reviews]


def check_tokenizer_agrees(tokenizer, paths: list[Path], split: PreparedSplit) -> None:
    """Fail unless tokenizer.json encodes these reviews exactly as the bulk path did."""
    encodings = tokenizer.encode_batch_fast([read_review(p) for p in paths], add_special_tokens=False)
    for k, encoding in enumerate(encodings):
        if not np.array_equal(encoding.ids, split.review(k)):
            raise DataError(f"tokenizer.json and split_words disagree on {paths[k]}: report this as a bug")


def split_stats(split: PreparedSplit) -> dict:
    return {
        "reviews": len(split),
        "pos": int((split.labels == 1).sum()),
        "neg": int((split.labels == 0).sum()),
        "tokens": int(split.lengths.sum()),
        "length_mean": round(float(split.lengths.mean()), 1),
        **{f"length_p{p}": int(np.percentile(split.lengths, p)) for p in PERCENTILES},
        "length_max": int(split.lengths.max()),
        "oov_rate": round(float((np.asarray(split.tokens) == UNK_ID).mean()), 5),
    }


def validate_settings(settings: Mapping[str, Any]) -> None:
    """Refuse a `prepare` section that cannot give a vocabulary and a validation split: one UserError line."""
    missing = [key for key in SETTING_KEYS if key not in settings]
    if missing:
        raise UserError(f"the prepare settings lack {', '.join(missing)}")
    val_fraction = settings["val_fraction"]
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, (int, float)) or not 0 < val_fraction < 1:
        raise UserError(f"prepare.val_fraction={val_fraction!r} must be a number in (0, 1)")
    # A vocabulary holds <pad> and <unk> before any word, hence at least 3.
    for key, least in (("vocab_size", 3), ("min_frequency", 1), ("split_seed", 0)):
        value = settings[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise UserError(f"prepare.{key}={value!r} must be an integer >= {least}")


def prepare(
    raw_dir: Path, out_dir: Path, stats_path: Path, settings: Mapping[str, Any], workers: int | None = None
) -> dict:
    """Tokenize the reviews under `raw_dir` with the `prepare` settings; write arrays to `out_dir` and stats to
    `stats_path`. `workers`: processes that read the reviews (default: one per CPU); the output is the same."""
    validate_settings(settings)
    train_paths, train_labels, train_ratings = list_reviews(raw_dir / "train")
    test_paths, test_labels, test_ratings = list_reviews(raw_dir / "test")
    workers = workers or os.cpu_count() or 1
    log.info("reading and splitting %d reviews into words (%d processes)", len(train_paths) + len(test_paths),
             workers)
    chunks = encode_all(train_paths + test_paths, workers=workers)

    # One word list for the whole corpus; `local_ids` index into it.
    index: dict[str, int] = {}
    remaps = []
    for _, _, chunk_words in chunks:
        remaps.append(np.array([index.setdefault(w, len(index)) for w in chunk_words], dtype=np.int32))
    words = list(index)
    local_ids = np.concatenate([remap[ids] for remap, (ids, _, _) in zip(remaps, chunks)])
    lengths = np.concatenate([chunk_lengths for _, chunk_lengths, _ in chunks])

    n_train_dir = len(train_paths)
    train_tokens_end = int(lengths[:n_train_dir].sum())
    log.info("learning the vocabulary from the train split")
    kept, held = stratified_split(train_labels, settings["val_fraction"], settings["split_seed"])
    train_ids, train_lengths = select(local_ids[:train_tokens_end], lengths[:n_train_dir], kept)
    counts = np.bincount(train_ids, minlength=len(words))  # the vocabulary sees the train split only
    vocab = build_vocab(dict(zip(words, counts.tolist())), settings["vocab_size"], settings["min_frequency"])
    to_vocab = np.array([vocab.get(w, UNK_ID) for w in words], dtype=np.int32)

    val_ids, val_lengths = select(local_ids[:train_tokens_end], lengths[:n_train_dir], held)
    splits = {
        "train": PreparedSplit(to_vocab[train_ids], train_lengths, train_labels[kept], train_ratings[kept]),
        "val": PreparedSplit(to_vocab[val_ids], val_lengths, train_labels[held], train_ratings[held]),
        "test": PreparedSplit(
            to_vocab[local_ids[train_tokens_end:]], lengths[n_train_dir:], test_labels, test_ratings
        ),
    }
    tokenizer = make_tokenizer(vocab)
    log.info("checking the tokenizer against the arrays on the validation reviews")
    check_tokenizer_agrees(tokenizer, [train_paths[k] for k in held], splits["val"])
    stats = {"vocab_size": len(vocab), **{name: split_stats(split) for name, split in splits.items()}}

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    log.info("writing %s", out_dir)
    with tempfile.TemporaryDirectory(dir=out_dir.parent, prefix=".prepare-") as tmp:
        staging = Path(tmp) / "prepared"
        staging.mkdir()
        tokenizer.save(str(staging / "tokenizer.json"))
        for name, split in splits.items():
            split.save(staging / name)
        stats_tmp = Path(tmp) / "stats.json"
        stats_tmp.write_text(json.dumps(stats, indent=2) + "\n")
        if out_dir.exists():
            shutil.rmtree(out_dir)
        staging.rename(out_dir)
        stats_path.parent.mkdir(parents=True, exist_ok=True)
        stats_tmp.replace(stats_path)
    return stats


@hydra_app("prepare")
def main(cfg: DictConfig) -> None:
    paths = cfg.paths
    stats = prepare(Path(paths.raw_dir), Path(paths.prepared_dir), Path(paths.prepare_stats), cfg.prepare)
    for name in SPLITS:
        s = stats[name]
        log.info("%s: %d reviews (%d pos, %d neg), median length %s", name, s["reviews"], s["pos"], s["neg"],
                 s["length_p50"])
    log.info("vocabulary: %d tokens; test OOV rate %.2f%%", stats["vocab_size"], 100 * stats["test"]["oov_rate"])


if __name__ == "__main__":
    main()
