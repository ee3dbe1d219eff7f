"""Write the GPU scripts' training text and tokenizer once, so that runs side by side share them.

    python scripts/export_corpus.py OUT      # OUT/corpus.txt (one sentence per line) and OUT/tokenizer

The text is ~9M words of NLTK corpora with the WSJ-sample sentences excluded (needs the NLTK data of
GLOMTEXT_DATA / NLTK_DATA; a CPU is enough), the tokenizer an 8k WordPiece vocabulary trained on it.
"""

import sys
from pathlib import Path

from glomtext.data import load_sentences, train_tokenizer

CORPUS = "nltk:brown,gutenberg,reuters,movie_reviews,abc,webtext,state_union,inaugural,masc_tagged,conll2000"

if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    ds, stats = load_sentences(corpus=CORPUS, exclude_treebank="nltk:treebank")
    print(stats.summary())
    with open(out / "corpus.txt", "w") as f:
        f.writelines(s + "\n" for s in ds["text"])
    train_tokenizer(ds["text"], vocab_size=8000, output_dir=str(out / "tokenizer"))
