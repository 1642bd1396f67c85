"""Reading a tagged corpus: JSON Lines (``{"image": path, "tags": [...]}``) or CSV (``image,tags``).

Image paths are relative to the corpus file. Tags are normalised: Unicode compatibility forms folded (NFKC: a
fullwidth ``ｓｋｙ`` is ``sky``, a decomposed ``café`` the composed one), invisible format characters (zero-width
spaces and joiners) dropped, case folded, whitespace collapsed. A UTF-8 byte-order mark is allowed. Every problem
names the file and, where there is one, the line; a CSV quote left open is one.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

from annot.errors import CorpusError
from annot.inputs import read_text

_SPACES = re.compile(r"\s+")


def normalize_tag(tag: str) -> str:
    """A tag in one canonical form: ``"  Polar  Bear "`` -> ``"polar bear"``; NFKC, no format characters
    (category Cf, e.g. U+200B), lower-cased, whitespace collapsed."""
    folded = unicodedata.normalize("NFKC", tag)
    visible = "".join(ch for ch in folded if unicodedata.category(ch) != "Cf")
    return _SPACES.sub(" ", visible.strip().lower())


@dataclass(frozen=True)
class CorpusEntry:
    """One image of a corpus file: its line number, absolute path and normalised tags."""

    line: int
    path: Path
    tags: tuple[str, ...]


@dataclass(frozen=True)
class Corpus:
    """A parsed corpus file. ``vocabulary`` orders the words; ``dropped_tags`` counts tags outside it."""

    source: Path
    entries: tuple[CorpusEntry, ...]
    vocabulary: tuple[str, ...]
    dropped_tags: dict[str, int] = field(default_factory=dict)

    @property
    def n_untagged(self) -> int:
        return sum(1 for e in self.entries if not e.tags)


def _read_text(path: Path, what: str) -> str:
    return read_text(path, what)


def read_vocabulary(path: Path) -> tuple[str, ...]:
    """One word a line; blank lines ignored; a repeated word is an error."""
    lines = _read_text(Path(path), "vocabulary").splitlines()
    words: list[str] = []
    seen: dict[str, int] = {}
    for number, raw in enumerate(lines, start=1):
        word = normalize_tag(raw)
        if not word:
            continue
        if word in seen:
            raise CorpusError(f"{path}:{number}: word {word!r} repeats line {seen[word]}")
        seen[word] = number
        words.append(word)
    if not words:
        raise CorpusError(f"{path}: vocabulary is empty")
    return tuple(words)


def _split_csv_tags(cell: str) -> list[str]:
    return cell.split(";") if ";" in cell else cell.split()


def _rows_jsonl(path: Path, text: str) -> list[tuple[int, str, list[str]]]:
    rows: list[tuple[int, str, list[str]]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise CorpusError(f"{path}:{number}: not valid JSON ({exc.msg})") from exc
        if not isinstance(obj, dict) or not isinstance(obj.get("image"), str) or not obj["image"]:
            raise CorpusError(f'{path}:{number}: expected an object with an "image" path')
        tags = obj.get("tags", [])
        if isinstance(tags, str):
            tags = _split_csv_tags(tags)
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise CorpusError(f'{path}:{number}: "tags" must be a list of strings')
        rows.append((number, obj["image"], tags))
    return rows


def _rows_csv(path: Path, text: str) -> list[tuple[int, str, list[str]]]:
    """CSV rows, strictly: a quote left open (which would swallow the lines after it into one field) or any other
    malformed row is an error naming the line where the row starts."""
    rows: list[tuple[int, str, list[str]]] = []
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    number = 0
    while True:
        start = reader.line_num + 1
        try:
            record = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise CorpusError(f"{path}:{start}: malformed CSV ({exc}); a quote left open swallows the lines after it") from None
        number = start
        if reader.line_num != start:
            raise CorpusError(f"{path}:{start}: a quoted field runs over {reader.line_num - start + 1} lines (a quote "
                              "left open?); put each image on one line")
        if not record or not any(cell.strip() for cell in record):
            continue
        if number == 1 and record[0].strip().lower() == "image":
            continue  # header
        if len(record) > 2:
            raise CorpusError(f"{path}:{number}: expected 2 columns (image,tags), got {len(record)}")
        image = record[0].strip()
        if not image:
            raise CorpusError(f"{path}:{number}: empty image path")
        rows.append((number, image, _split_csv_tags(record[1]) if len(record) > 1 else []))
    return rows


def _absolute(path: Path) -> Path:
    """The path with symlinks resolved; as it is (made absolute) when they cannot be, e.g. in a symlink loop: then
    reading the image fails and it is counted as unreadable."""
    try:
        return path.resolve()
    except (OSError, RuntimeError):
        return Path(os.path.abspath(path))


def read_corpus(path: Path, vocabulary: tuple[str, ...] | None = None) -> Corpus:
    """Parse a corpus file; with ``vocabulary``, tags outside it are dropped (and counted) and its order is kept."""
    path = Path(path)
    text = _read_text(path, "corpus")
    if path.suffix.lower() == ".csv":
        rows = _rows_csv(path, text)
    elif path.suffix.lower() in {".jsonl", ".json", ".ndjson"}:
        rows = _rows_jsonl(path, text)
    else:
        raise CorpusError(f"{path}: unknown corpus format {path.suffix!r} (expected .jsonl or .csv)")
    if not rows:
        raise CorpusError(f"{path}: no images listed")

    base = path.resolve().parent
    allowed = set(vocabulary) if vocabulary is not None else None
    first_line: dict[Path, int] = {}
    dropped: Counter[str] = Counter()
    entries: list[CorpusEntry] = []
    for number, image, raw_tags in rows:
        image_path = _absolute(base / image)
        if image_path in first_line:
            raise CorpusError(f"{path}:{number}: duplicate image {image} (first on line {first_line[image_path]})")
        first_line[image_path] = number
        tags: list[str] = []
        for tag in dict.fromkeys(normalize_tag(raw) for raw in raw_tags):  # unique, in order
            if not tag:
                continue
            if allowed is not None and tag not in allowed:
                dropped[tag] += 1
                continue
            tags.append(tag)
        entries.append(CorpusEntry(number, image_path, tuple(tags)))

    words = vocabulary if vocabulary is not None else tuple(sorted({t for e in entries for t in e.tags}))
    return Corpus(path, tuple(entries), tuple(words), dict(dropped))


def keep_frequent(corpus: Corpus, min_photos: int) -> tuple[Corpus, dict[str, int]]:
    """The corpus without the words on fewer than ``min_photos`` of its images, and those words with their counts."""
    if min_photos <= 1:
        return corpus, {}
    counts = Counter(t for e in corpus.entries for t in e.tags)
    rare = {t: n for t, n in sorted(counts.items()) if n < min_photos}
    if not rare:
        return corpus, {}
    entries = tuple(CorpusEntry(e.line, e.path, tuple(t for t in e.tags if t not in rare)) for e in corpus.entries)
    return replace(corpus, entries=entries, vocabulary=tuple(w for w in corpus.vocabulary if w not in rare)), rare
