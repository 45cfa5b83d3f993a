"""Prepare the folder that travels with the GPU check (scripts/gpu_check.py) to a machine that holds only torch,
numpy, tokenizers, torchmetrics and pytorch_lightning, offline.

    python scripts/prepare_gpu_check.py                       # -> build/gpu_check, from data/prepared if there
    python scripts/prepare_gpu_check.py --synthetic --out build/b   # a tiny made-up set in the same format

The folder holds:
    gpu_check.py         the check itself, so that `python3 <folder>/gpu_check.py --out $OUT` runs it
    python/rnnlab/       rnnlab's sources
    python/<package>/    the pure-Python packages rnnlab imports that a GPU image lacks (Hydra, OmegaConf and
                         OmegaConf's ANTLR runtime), copied from this environment (no compiled file may be among them)
    conf/                the project's settings, so the check composes experiment=article as training does
    data/prepared/       the prepared splits in rnnlab's format (PreparedSplit, tokenizer.json): each review cut to
                         its last --max-len tokens (what experiment=article reads; data.keep=last), token ids as
                         uint16, optionally a random subset of --reviews per split; without data/prepared, a small
                         synthetic set (made-up words, labels learnable from two marker tokens)
    manifest.json        where the data came from, its sizes, the packages and rnnlab's commit

It refuses to write a folder over --max-mb (the device tool carries 64 MiB at most) and replaces an existing
folder only once the new one is complete.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from rnnlab.data.arrays import FIELDS, PreparedSplit  # noqa: E402
from rnnlab.data.base import SPLITS  # noqa: E402
from rnnlab.data.text import PAD_ID, build_vocab, make_tokenizer  # noqa: E402
from tokenizers import Tokenizer  # noqa: E402

# Imported by rnnlab (rnnlab.cli, rnnlab.composition) and absent from the GPU image; pure Python. Distribution
# names for the manifest's versions.
CARRIED_PACKAGES = {"hydra": "hydra-core", "omegaconf": "omegaconf", "antlr4": "antlr4-python3-runtime"}
SYNTHETIC_REVIEWS = {"train": 640, "val": 150, "test": 150}  # val: 150 reviews make an odd number of 64-batches
SYNTHETIC_VOCAB = 10_000  # experiment=article keeps 10,000 words: the vocabulary must hold them
COMPILED_SUFFIXES = (".so", ".pyd", ".dylib")


class PrepareError(Exception):
    """A problem the user can fix: reported as one line."""


def compact_split(split: PreparedSplit, max_len: int, reviews: int | None, seed: int) -> PreparedSplit:
    """The split's reviews (all, or a random `reviews` of them, kept in order), each cut to its last `max_len`
    tokens, tokens as uint16 where every id fits."""
    chosen = np.arange(len(split))
    if reviews is not None and reviews < len(split):
        chosen = np.sort(np.random.default_rng(seed).choice(len(split), size=reviews, replace=False))
    kept = [np.asarray(split.review(k))[-max_len:] for k in chosen]
    tokens = np.concatenate(kept) if kept else np.zeros(0, dtype=np.int32)
    dtype = np.uint16 if tokens.size == 0 or int(tokens.max()) <= np.iinfo(np.uint16).max else np.int32
    return PreparedSplit(tokens=tokens.astype(dtype), lengths=np.array([len(t) for t in kept], dtype=np.int32),
                         labels=np.asarray(split.labels)[chosen].astype(np.int8),
                         ratings=np.asarray(split.ratings)[chosen].astype(np.int8))


def synthetic_split(reviews: int, max_len: int, rng: np.random.Generator) -> PreparedSplit:
    """Made-up reviews: lengths from 5 to max_len, words drawn uniformly, and one marker word (id 2 positive,
    id 3 negative) in a fifth of the places, so that a model can learn something in a few steps."""
    lengths = rng.integers(5, max_len + 1, size=reviews).astype(np.int32)
    labels = rng.integers(0, 2, size=reviews).astype(np.int8)
    tokens = rng.integers(4, SYNTHETIC_VOCAB, size=int(lengths.sum())).astype(np.uint16)
    markers = np.repeat(np.where(labels == 1, 2, 3), lengths)
    marked = rng.random(tokens.size) < 0.2
    tokens[marked] = markers[marked]
    ratings = np.where(labels == 1, rng.integers(7, 11, size=reviews), rng.integers(1, 5, size=reviews))
    return PreparedSplit(tokens=tokens, lengths=lengths, labels=labels, ratings=ratings.astype(np.int8))


def write_data(target: Path, prepared: Path | None, max_len: int, reviews: int | None, seed: int) -> dict:
    """data/prepared in `target`; returns the manifest's description of it."""
    out = target / "data" / "prepared"
    out.mkdir(parents=True)
    description = {"max_len": max_len, "splits": {}}
    if prepared is None:
        rng = np.random.default_rng(seed)
        words = {f"word{k}": SYNTHETIC_VOCAB - k for k in range(SYNTHETIC_VOCAB - 2)}
        make_tokenizer(build_vocab(words, SYNTHETIC_VOCAB, 1)).save(str(out / "tokenizer.json"))
        description["source"] = "synthetic"
        for name in SPLITS:
            split = synthetic_split(reviews or SYNTHETIC_REVIEWS[name], max_len, rng)
            split.save(out / name)
            description["splits"][name] = {"reviews": len(split), "of_reviews": len(split),
                                           "tokens": int(split.lengths.sum())}
        description["vocab_size"] = SYNTHETIC_VOCAB
        return description
    description["vocab_size"] = Tokenizer.from_file(str(prepared / "tokenizer.json")).get_vocab_size()
    description["source"] = f"subset of {prepared}" if reviews else f"all of {prepared}"
    shutil.copy(prepared / "tokenizer.json", out / "tokenizer.json")
    for k, name in enumerate(SPLITS):
        full = PreparedSplit.load(prepared / name)
        split = compact_split(full, max_len, reviews, seed + k)
        split.save(out / name)
        description["splits"][name] = {"reviews": len(split), "of_reviews": len(full),
                                       "tokens": int(split.lengths.sum()), "token_dtype": str(split.tokens.dtype)}
    return description


def copy_sources(target: Path) -> dict:
    """rnnlab's sources, conf/ and the carried packages; returns the packages' versions."""
    python = target / "python"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "src" / "rnnlab", python / "rnnlab", ignore=ignore)
    shutil.copytree(ROOT / "conf", target / "conf", ignore=shutil.ignore_patterns("local"))
    shutil.copy(ROOT / "scripts" / "gpu_check.py", target / "gpu_check.py")
    versions = {}
    for package, distribution in CARRIED_PACKAGES.items():
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise PrepareError(f"{package} is not installed here: install the project's dependencies first")
        source = Path(list(spec.submodule_search_locations)[0])
        compiled = [p for p in source.rglob("*") if p.suffix in COMPILED_SUFFIXES]
        if compiled:
            raise PrepareError(f"{package} holds compiled code ({compiled[0].name}): it cannot travel as source")
        shutil.copytree(source, python / package, ignore=ignore)
        versions[package] = importlib.metadata.version(distribution)
    return versions


def commit() -> str | None:
    """rnnlab's commit, with '+changes' when the working tree differs from it."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "src", "conf", "scripts"], cwd=ROOT,
                               capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return head.stdout.strip() + ("+changes" if dirty.stdout.strip() else "")


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def prepare(out: Path, prepared: Path | None, max_len: int, reviews: int | None, seed: int, max_mb: float) -> dict:
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{out.name}-", dir=out.parent) as tmp:
        target = Path(tmp) / "bundle"
        target.mkdir()
        data = write_data(target, prepared, max_len, reviews, seed)
        packages = copy_sources(target)
        size = folder_bytes(target)  # the manifest itself is a few hundred bytes
        if size > max_mb * 2**20:
            raise PrepareError(f"the folder would hold {size / 2**20:.1f} MiB, over --max-mb {max_mb:g}: "
                               "take fewer --reviews or a smaller --max-len")
        manifest = {"created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "rnnlab_commit": commit(),
                    "data": data, "carried_packages": packages, "bytes": size,
                    "pad_id": PAD_ID, "prepared_with_python": sys.version.split()[0]}
        (target / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        # Swap in the complete folder; the old one goes only after.
        old = Path(tmp) / "old"
        if out.exists():
            os.replace(out, old)
        os.replace(target, out)
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="prepare_gpu_check", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="build/gpu_check", help="the folder to write (replaced when complete)")
    parser.add_argument("--prepared", default=None,
                        help="prepared splits to carry (default: data/prepared where it exists, else synthetic)")
    parser.add_argument("--synthetic", action="store_true", help="carry a small made-up set, whatever exists")
    parser.add_argument("--max-len", type=int, default=500, help="tokens kept per review, its last (default 500)")
    parser.add_argument("--reviews", type=int, default=None, help="a random subset of this many reviews per split")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-mb", type=float, default=60.0, help="refuse a bigger folder (MiB)")
    args = parser.parse_args(argv)
    for name in ("max_len", "reviews"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be positive, got {value}")
    if args.synthetic and args.prepared:
        parser.error("--synthetic and --prepared exclude each other")
    prepared = None
    if args.prepared:
        prepared = Path(args.prepared)
    elif not args.synthetic and (ROOT / "data" / "prepared" / "tokenizer.json").is_file():
        prepared = ROOT / "data" / "prepared"
    try:
        if prepared is not None:
            missing = [f"{prepared / name}" for name in SPLITS if not all(
                (prepared / name / f"{field}.npy").is_file() for field in FIELDS)]
            if not (prepared / "tokenizer.json").is_file():
                missing.append(str(prepared / "tokenizer.json"))
            if missing:
                raise PrepareError(f"{prepared} is not a prepared folder: {missing[0]} is missing or incomplete")
        manifest = prepare(Path(args.out), prepared, args.max_len, args.reviews, args.seed, args.max_mb)
    except PrepareError as e:
        print(f"prepare_gpu_check: error: {e}", file=sys.stderr)
        return 1
    print(f"prepare_gpu_check: wrote {args.out} ({manifest['bytes'] / 2**20:.1f} MiB, data: "
          f"{manifest['data']['source']})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
