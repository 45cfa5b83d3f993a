"""Tiny IMDB-layout archives built on the fly: six positive and six negative reviews per split."""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

POSITIVE = [
    "A wonderful film.<br /><br />The acting is great and the story is moving.",
    "I loved it! Great cast, great music, a truly great movie.",
    "Brilliant and touching; one of the best films of the year.",
    "Great fun from start to end. I would watch it again.",
    "The director did a wonderful job, the best work of his career.",
    "An excellent, heartfelt story. Loved every minute.",
]
NEGATIVE = [
    "A terrible film.<br />The acting is awful and the plot is boring.",
    "I hated it. Bad cast, bad music, a truly bad movie.",
    "Dull and pointless; one of the worst films of the year.",
    "Boring from start to end. I would never watch it again.",
    "The director did an awful job, the worst work of his career.",
    "A waste of time, badly written. Hated every minute.",
]


def review_members(test_extra: str | None = None) -> dict[str, bytes]:
    """Archive member name -> content for a tiny but complete aclImdb tree."""
    members = {"aclImdb/README": b"tiny test copy\n", "aclImdb/imdb.vocab": b"film\nmovie\n"}
    for split in ("train", "test"):
        for label, texts, stars in (("pos", POSITIVE, (7, 8, 9, 10)), ("neg", NEGATIVE, (1, 2, 3, 4))):
            for k, text in enumerate(texts):
                if split == "test" and k == 0 and test_extra:
                    text = f"{text} {test_extra}"
                members[f"aclImdb/{split}/{label}/{k}_{stars[k % 4]}.txt"] = text.encode()
    return members


def write_archive(path: Path, members: dict[str, bytes], links: dict[str, str] | None = None) -> str:
    """Write a .tar.gz of `members` (plus symlinks name -> target); return its sha256."""
    with tarfile.open(path, "w:gz") as tar:
        for name, content in sorted(members.items()):
            info = tarfile.TarInfo(name)
            info.size = len(content)
            info.mtime = 0
            tar.addfile(info, io.BytesIO(content))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tar.addfile(info)
    return hashlib.sha256(path.read_bytes()).hexdigest()
