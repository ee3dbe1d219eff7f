"""Readers for the evaluation data.

* PTB bracketed treebanks (``.mrg`` and similar; ``nltk:treebank`` for the sample shipped with NLTK);
* the CoNLL-U family: UD ``.conllu``, PARSEME ``.cupt``, STREUSLE ``.conllulex`` (read as blocks of
  tab-separated token lines, interpreted in :mod:`glomtext.evaluation.units`);
* discontinuous constituency trees: NEGRA ``.export`` and disco-dop's discbracket (``.dbr``).

Bad input never disappears silently: a malformed item (one tree, one sentence) is skipped and counted
in a :class:`ReadLog` together with its file and line; a file that cannot be used at all (missing,
a glob matching nothing, not one readable item) raises :class:`ReadError` naming it.
"""

from __future__ import annotations

import fnmatch

import glob
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from nltk import Tree

MAX_EXAMPLES = 5  # skipped items quoted in full in a ReadLog; the rest are only counted


class ReadError(ValueError):
    """A file (or a whole input) that cannot be used; the message names it."""


@dataclass
class ReadLog:
    """What a reader kept and what it skipped (by reason), with the first few skips quoted."""

    read: int = 0
    skipped: Counter = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)
    replaced_lines: int = 0  # lines with bytes that are not UTF-8, kept with U+FFFD in their place

    def skip(self, where: str, reason: str, detail: str = "") -> None:
        """Count one skipped item; ``where`` is ``file:line``."""
        self.skipped[reason] += 1
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append(f"{where}: {reason}" + (f" ({detail})" if detail else ""))

    @property
    def n_skipped(self) -> int:
        return sum(self.skipped.values())

    def as_dict(self) -> dict:
        return {"read": self.read, "skipped": dict(self.skipped), "examples": list(self.examples),
                "replaced_lines": self.replaced_lines}

    def summary(self) -> str:
        replaced = f"; {self.replaced_lines} line(s) with invalid UTF-8 kept with U+FFFD" if self.replaced_lines else ""
        if not self.n_skipped:
            return f"{self.read} read{replaced}"
        reasons = ", ".join(f"{n} {r}" for r, n in self.skipped.most_common())
        return f"{self.read} read, {self.n_skipped} skipped ({reasons}){replaced}; e.g. {self.examples[0]}"


def expand_paths(spec: str) -> list[Path]:
    """Files named by a path or a glob pattern, sorted; ReadError if there are none."""
    paths = sorted(Path(p) for p in glob.glob(spec, recursive=True) if Path(p).is_file())
    if not paths:
        raise ReadError(f"no file matches {spec!r}")
    return paths


def read_text(path: Path, log: ReadLog | None = None) -> str:
    """The text of a UTF-8 file (newlines untranslated: a lone \\r may be part of a word), or a
    ReadError naming it. Bytes that are not UTF-8 become U+FFFD; the lines holding them are counted
    in ``log`` and the first is quoted with its position."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ReadError(f"{path}: cannot read ({e})") from e
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        bad = [i for i, line in enumerate(raw.split(b"\n"), start=1) if not _is_utf8(line)]
        if log is not None:
            log.replaced_lines += len(bad)
            if len(log.examples) < MAX_EXAMPLES:
                log.examples.append(f"{path}:{bad[0]}: invalid UTF-8 kept as U+FFFD ({e.reason} at byte {e.start})")
        return raw.decode("utf-8", errors="replace")


def _is_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def read_lines(path: Path, log: ReadLog | None = None) -> list[str]:
    """The lines of a UTF-8 file, split at line feeds only (a carriage return before one is dropped):
    ``str.splitlines`` would also split at characters such as U+2028 or \\x1c inside a word."""
    return [line.removesuffix("\r") for line in read_text(path, log).split("\n")]


# --------------------------------------------------------------------------------------- PTB


@dataclass
class PTBTree:
    """One treebank tree (empty elements, traces and function tags kept) and where it came from."""

    tree: Tree
    source: str  # "file:line" of its opening bracket


def treebank_files(spec: str, log: ReadLog | None = None) -> Iterator[tuple[str, str]]:
    """(name, text) of each file of a treebank: a path, a glob, or ``nltk:NAME[/FILE_GLOB]``
    (e.g. ``nltk:treebank``, or ``nltk:treebank/wsj_00??.mrg`` for the files wsj_0001-wsj_0099)."""
    if spec.startswith("nltk:"):
        from glomtext.paths import setup_nltk_data

        import nltk.corpus

        setup_nltk_data()
        name, _, pattern = spec.split(":", 1)[1].partition("/")
        try:
            reader = getattr(nltk.corpus, name)
            fileids = reader.fileids()
        except (AttributeError, LookupError, OSError) as e:
            raise ReadError(f"{spec}: nltk corpus not found ({str(e).strip().splitlines()[0]}); set NLTK_DATA or GLOMTEXT_DATA") from e
        if pattern:
            fileids = [f for f in fileids if fnmatch.fnmatch(f, pattern)]
            if not fileids:
                raise ReadError(f"{spec}: no file of nltk:{name} matches {pattern!r}")
        for fileid in fileids:
            yield f"{spec}/{fileid}", reader.raw(fileid)
    else:
        for path in expand_paths(spec):
            yield str(path), read_text(path, log)


def split_bracketed(text: str) -> Iterator[tuple[int, str | None, str]]:
    """Top-level ``( ... )`` groups of a text: (line, group or None when malformed, problem).

    Text outside brackets, a stray ``)`` and an unclosed last group are reported (group None) so
    the caller can count them; the scan then resumes at the next top-level ``(``.
    """
    depth, start, start_line, line, junk_line = 0, -1, 0, 1, 0
    for i, ch in enumerate(text):
        if ch == "\n":
            line += 1
        elif ch == "(":
            if depth == 0:
                start, start_line = i, line
            depth += 1
        elif ch == ")":
            if depth == 0:
                yield line, None, "unbalanced ')'"
                continue
            depth -= 1
            if depth == 0:
                yield start_line, text[start : i + 1], ""
        elif depth == 0 and not ch.isspace() and junk_line != line:
            junk_line = line  # report text outside brackets once per line
            yield line, None, "text outside brackets"
    if depth > 0:
        yield start_line, None, "unclosed '('"


def parse_ptb(group: str) -> Tree:
    """An nltk Tree from one bracketed group; the nameless outer bracket of PTB files is removed
    (a nameless root with several children is named TOP). ValueError when malformed."""
    tree = Tree.fromstring(group)
    if tree.label() == "" and len(tree) == 1 and isinstance(tree[0], Tree):
        tree = tree[0]
    elif tree.label() == "":
        tree.set_label("TOP")
    for pos in tree.treepositions("leaves"):
        parent = tree[pos[:-1]]
        if len(parent) != 1:
            raise ValueError(f"word {tree[pos]!r} has no POS tag of its own")
    return tree


def read_ptb(spec: str, max_sentences: int | None = None, log: ReadLog | None = None) -> tuple[list[PTBTree], ReadLog]:
    """The trees of a PTB-style treebank, at most ``max_sentences``; malformed ones skipped and counted."""
    log = log or ReadLog()
    trees: list[PTBTree] = []
    for name, text in treebank_files(spec, log):
        if max_sentences is not None and len(trees) >= max_sentences:
            break
        for line, group, problem in split_bracketed(text):
            if max_sentences is not None and len(trees) >= max_sentences:
                break
            where = f"{name}:{line}"
            if group is None:
                log.skip(where, problem)
                continue
            try:
                trees.append(PTBTree(parse_ptb(group), where))
            except ValueError as e:
                log.skip(where, "malformed tree", str(e).splitlines()[0][:120])
    log.read = len(trees)
    if not trees:
        raise ReadError(f"{spec}: no readable tree" + (f" ({log.examples[0]})" if log.examples else ""))
    return trees, log


# ------------------------------------------------------------------------- CoNLL-U family


@dataclass
class ConllSentence:
    """One sentence of a CoNLL-U-style file: its word lines (multiword-token ranges and empty nodes
    removed) as column lists, its comments, and the line where it starts."""

    source: str
    comments: list[str]
    rows: list[list[str]]

    @property
    def words(self) -> list[str]:
        return [r[1] for r in self.rows]


def read_conll(path: str | Path, n_columns: int, max_sentences: int | None = None, log: ReadLog | None = None) -> tuple[list[ConllSentence], ReadLog]:
    """Sentences of a CoNLL-U (10 columns), .cupt (11) or .conllulex (19) file.

    A sentence with a line of the wrong width or word ids that are not 1, 2, 3, ... is skipped
    and counted. Ranges (``3-4``) and empty nodes (``8.1``) are not words and are dropped.
    """
    path = Path(path)
    log = log or ReadLog()
    sentences: list[ConllSentence] = []
    lines = read_lines(path, log)
    block: list[tuple[int, str]] = []
    for i, text in enumerate(lines + [""], start=1):
        if text.strip():
            block.append((i, text))
            continue
        if block:
            if max_sentences is not None and len(sentences) >= max_sentences:
                break
            sentence = _conll_block(block, path, n_columns, log)
            if sentence is not None:
                sentences.append(sentence)
            block = []
    log.read = len(sentences)
    if not sentences:
        raise ReadError(f"{path}: no readable sentence" + (f" ({log.examples[0]})" if log.examples else ""))
    return sentences, log


def _conll_block(block: list[tuple[int, str]], path: Path, n_columns: int, log: ReadLog) -> ConllSentence | None:
    """One sentence from its (line number, text) lines, or None (skipped and counted)."""
    where = f"{path}:{block[0][0]}"
    comments, rows = [], []
    for line_no, text in block:
        if text.startswith("#"):
            comments.append(text)
            continue
        cols = text.split("\t")
        if len(cols) != n_columns:
            log.skip(f"{path}:{line_no}", f"line without {n_columns} tab-separated columns", f"got {len(cols)}")
            return None
        if re.fullmatch(r"\d+-\d+|\d+\.\d+", cols[0]):
            continue  # multiword-token range or empty node: not a word
        if cols[0] != str(len(rows) + 1):
            log.skip(f"{path}:{line_no}", "word ids not 1, 2, 3, ...", f"id {cols[0]!r} after {len(rows)} words")
            return None
        rows.append(cols)
    if not rows:
        log.skip(where, "sentence without words")
        return None
    return ConllSentence(where, comments, rows)


# ------------------------------------------------------------- discontinuous constituency


@dataclass
class DiscTree:
    """A discontinuous constituency tree as its nonterminals: (label, set of word indices)."""

    source: str
    words: list[str]
    nodes: list[tuple[str, frozenset[int]]]


def read_export(path: str | Path, max_sentences: int | None = None, log: ReadLog | None = None) -> tuple[list[DiscTree], ReadLog]:
    """Sentences of a NEGRA export file (format 3 or 4, detected per line from the column count).

    Words attached to the virtual root (parent 0; in NEGRA-style corpora this is the punctuation)
    belong to no constituent; they are removed from the sentence, as disco-dop's ``--punct=remove``
    does, because otherwise every constituent around a comma would count as discontinuous.
    """
    path = Path(path)
    log = log or ReadLog()
    trees: list[DiscTree] = []
    block: list[tuple[int, str]] | None = None
    in_table = False
    for i, text in enumerate(read_lines(path, log), start=1):
        if text.startswith("#BOT"):
            in_table = True
        elif text.startswith("#EOT"):
            in_table = False
        elif in_table or text.startswith("%%") or text.startswith("#FORMAT") or not text.strip():
            continue
        elif text.startswith("#BOS"):
            if block is not None:
                log.skip(f"{path}:{block[0][0]}", "#BOS without #EOS")
            block = [(i, text)]
        elif text.startswith("#EOS"):
            if block is None:
                log.skip(f"{path}:{i}", "#EOS without #BOS")
                continue
            if max_sentences is not None and len(trees) >= max_sentences:
                break
            tree = _export_sentence(block, path, log)
            if tree is not None:
                trees.append(tree)
            block = None
        elif block is not None:
            block.append((i, text))
        else:
            log.skip(f"{path}:{i}", "line outside #BOS ... #EOS")
    if block is not None:
        log.skip(f"{path}:{block[0][0]}", "#BOS without #EOS")
    log.read = len(trees)
    if not trees:
        raise ReadError(f"{path}: no readable export sentence" + (f" ({log.examples[0]})" if log.examples else ""))
    return trees, log


def _export_sentence(block: list[tuple[int, str]], path: Path, log: ReadLog) -> DiscTree | None:
    """One export sentence from its #BOS line and body lines, or None (skipped and counted)."""
    words: list[str] = []
    word_parent: list[int] = []
    node_label: dict[int, str] = {}
    node_parent: dict[int, int] = {}
    for line_no, text in block[1:]:
        cols = text.split()
        fmt4 = len(cols) % 2 == 0  # format 3: 5 (+2k) columns; format 4 adds a lemma: 6 (+2k)
        parent_col = 5 if fmt4 else 4
        if len(cols) < 5 or not cols[parent_col].isdigit():
            log.skip(f"{path}:{line_no}", "export line without a numeric parent column", text[:60])
            return None
        parent = int(cols[parent_col])
        if re.fullmatch(r"#\d+", cols[0]):
            node_label[int(cols[0][1:])] = cols[2 if fmt4 else 1]
            node_parent[int(cols[0][1:])] = parent
        else:
            words.append(cols[0])
            word_parent.append(parent)
    where = f"{path}:{block[0][0]}"
    known = set(node_label) | {0}
    if any(p not in known for p in word_parent + list(node_parent.values())):
        log.skip(where, "export parent that is not a node of the sentence")
        return None
    kept = [i for i, p in enumerate(word_parent) if p != 0]
    new_index = {old: new for new, old in enumerate(kept)}
    yields: dict[int, set[int]] = {n: set() for n in node_label}
    for i in kept:
        node, seen = word_parent[i], set()
        while node != 0:
            if node in seen:
                log.skip(where, "cycle in export parents")
                return None
            seen.add(node)
            yields[node].add(new_index[i])
            node = node_parent[node]
    nodes = [(node_label[n], frozenset(yields[n])) for n in sorted(node_label) if yields[n]]
    return DiscTree(where, [words[i] for i in kept], nodes)


def read_discbracket(path: str | Path, max_sentences: int | None = None, log: ReadLog | None = None) -> tuple[list[DiscTree], ReadLog]:
    """Trees in disco-dop's discbracket format, one per line: ``(S (A 0=w0) (B 2=w2) ...)``.

    Each leaf is ``INDEX=WORD`` under its POS tag; the indices must be 0 .. n-1 exactly once.
    """
    path = Path(path)
    log = log or ReadLog()
    trees: list[DiscTree] = []
    for i, text in enumerate(read_lines(path, log), start=1):
        if not text.strip():
            continue
        if max_sentences is not None and len(trees) >= max_sentences:
            break
        try:
            trees.append(_discbracket_tree(text, f"{path}:{i}"))
        except ValueError as e:
            log.skip(f"{path}:{i}", "malformed discbracket tree", str(e).splitlines()[0][:120])
    log.read = len(trees)
    if not trees:
        raise ReadError(f"{path}: no readable discbracket tree" + (f" ({log.examples[0]})" if log.examples else ""))
    return trees, log


def _discbracket_tree(text: str, source: str) -> DiscTree:
    tree = Tree.fromstring(text)
    words: dict[int, str] = {}
    for leaf in tree.leaves():
        index, sep, word = leaf.partition("=")
        if not sep or not index.isdigit():
            raise ValueError(f"leaf {leaf!r} is not INDEX=WORD")
        words[int(index)] = word
    if sorted(words) != list(range(len(tree.leaves()))):
        raise ValueError("leaf indices are not 0 .. n-1 exactly once")
    nodes = [
        (sub.label(), frozenset(int(leaf.partition("=")[0]) for leaf in sub.leaves()))
        for sub in tree.subtrees()
        if not (len(sub) == 1 and isinstance(sub[0], str))  # preterminals are not constituents
    ]
    return DiscTree(source, [words[i] for i in range(len(words))], nodes)
