"""Throughput of island extraction next to the bare forward pass, on the same batches in one run.

    python benchmarks/bench_islands.py                                  # random model, synthetic text
    python benchmarks/bench_islands.py --hidden 384 --levels 6 --device cuda
    python benchmarks/bench_islands.py --model runs/tiny --input sentences.txt

Measured, in sentences/s (best of --repeats runs over all sentences, the measurements taking turns, after one
untimed warm-up run):
  forward     tokenize + pad + model forward (what any use of the model pays)
  extraction  glomtext.islands.extract_islands: the same forward, then pooling to words, grouping
              into islands, adjacent distances and the Island objects; islands are grouped for
              --readout-batch-size sentences at a time (several values: one row each)
  grouping    find_islands_batch alone, on word states already on the device
and the ratio extraction / forward (target: >= 0.8, i.e. the read-out costs at most a quarter of
the forward pass). The read-out's cost per sentence is nearly fixed (a few hundred small kernels
per group of sentences and the Python Island objects), so the ratio rises with model size and
iterations. Like `glomtext islands`, the benchmark freezes the objects left by loading (gc.freeze())
unless --no-gc-freeze, and it counts the full garbage collections that ran while timing.
"""

from __future__ import annotations

import argparse
import gc
import random
import sys
import time
from itertools import islice
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from glomtext import GlomTextConfig, GlomTextModel  # noqa: E402
from glomtext.islands import extract_islands, find_islands_batch, load_model, word_states  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", metavar="DIR", help="a saved glomtext model (default: a random one of the size below)")
    p.add_argument("--input", metavar="FILE", help="sentences, one per line (default: random words)")
    p.add_argument("--hidden", type=int, default=256, help="random model: hidden size D")
    p.add_argument("--levels", type=int, default=5, help="random model: number of levels L")
    p.add_argument("--iterations", type=int, default=8, help="settling iterations T")
    p.add_argument("--vocab", type=int, default=8000, help="random model: vocabulary size")
    p.add_argument("--sentences", type=int, default=512, help="how many sentences")
    p.add_argument("--words", type=int, default=20, help="random text: mean words per sentence (uniform in [w/2, 3w/2])")
    p.add_argument("--batch-size", type=int, default=64, help="sentences per forward pass")
    p.add_argument("--readout-batch-size", type=int, nargs="+",
                   help="sentences per island grouping in extraction, one row each (default: the library's for the device)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--repeats", type=int, default=5, help="timed runs of each (taking turns); the best counts")
    p.add_argument("--method", default="average")
    p.add_argument("--threshold", type=float, default=0.9)
    p.add_argument("--nested", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-gc-freeze", action="store_true",
                   help="keep the libraries' objects in Python's collected generations (glomtext islands freezes them)")
    args = p.parse_args(argv)
    if any(r < 1 for r in args.readout_batch_size or []):
        p.error(f"--readout-batch-size must be >= 1, got {args.readout_batch_size}")
    return args


def random_model(args):
    """A randomly initialised GlomTextModel and a word-level tokenizer over words w0, w1, ..."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab = {t: i for i, t in enumerate(specials + [f"w{k}" for k in range(args.vocab - len(specials))])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = processors.BertProcessing(("[SEP]", vocab["[SEP]"]), ("[CLS]", vocab["[CLS]"]))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                        sep_token="[SEP]", mask_token="[MASK]")
    torch.manual_seed(args.seed)
    config = GlomTextConfig(vocab_size=args.vocab, hidden_size=args.hidden, num_levels=args.levels,
                            num_iterations=args.iterations)
    return GlomTextModel(config), tokenizer


def sentences_for(args, tokenizer) -> list[str]:
    if args.input:
        with open(args.input, encoding="utf-8", errors="replace") as f:
            return [line.strip() for line in islice((x for x in f if x.strip()), args.sentences)]
    rng = random.Random(args.seed)
    words = sorted(w for w in tokenizer.get_vocab() if w.isalpha() or (w[0] == "w" and w[1:].isdigit()))
    return [" ".join(rng.choices(words, k=rng.randint(max(1, args.words // 2), 3 * args.words // 2)))
            for _ in range(args.sentences)]


def batches(items, size):
    for start in range(0, len(items), size):
        yield items[start : start + size]


def sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


@torch.inference_mode()
def forward_only(model, tokenizer, sentences, args) -> None:
    max_len = model.config.max_position_embeddings
    for chunk in batches(sentences, args.batch_size):
        enc = tokenizer([s.split() for s in chunk], is_split_into_words=True, padding=True, truncation=True,
                        max_length=max_len, return_tensors="pt")
        model(input_ids=enc["input_ids"].to(args.device), attention_mask=enc["attention_mask"].to(args.device),
              num_iterations=args.iterations)
    sync(args.device)


def extraction(model, tokenizer, sentences, args, readout_batch_size: int | None) -> None:
    for _ in extract_islands(model, tokenizer, sentences, num_iterations=args.iterations, batch_size=args.batch_size,
                             device=args.device, method=args.method, threshold=args.threshold, nested=args.nested,
                             readout_batch_size=readout_batch_size):
        pass
    sync(args.device)


def grouping(states_batches, args) -> None:
    for states in states_batches:
        find_islands_batch(states, method=args.method, threshold=args.threshold, nested=args.nested)
    sync(args.device)


def best_rates(fns: dict, n: int, repeats: int) -> dict:
    """Sentences per second of the fastest of ``repeats`` runs of each function, the functions taking
    turns (forward, extraction, ..., forward, ...) so that a drift of the machine's speed hits all alike."""
    times: dict = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: n / min(t) for name, t in times.items()}


def main(argv=None) -> int:
    args = parse_args(argv)
    model, tokenizer = load_model(args.model) if args.model else random_model(args)
    model.to(args.device).eval()
    sentences = sentences_for(args, tokenizer)
    n = len(sentences)
    states = word_states(model, tokenizer, sentences, num_iterations=args.iterations, batch_size=args.batch_size, device=args.device)
    on_device = [[s.to(args.device) for s in chunk] for chunk in batches(states, args.batch_size)]
    if not args.no_gc_freeze:
        gc.freeze()  # as `glomtext islands` does after loading: full collections then skip the libraries' objects
    # warm-up (kernels, allocator, tokenizer caches)
    forward_only(model, tokenizer, sentences, args)
    readout = args.readout_batch_size or [None]
    for r in readout:
        extraction(model, tokenizer, sentences, args, r)
    grouping(on_device, args)
    fns = {"forward": lambda: forward_only(model, tokenizer, sentences, args)}
    for r in readout:
        fns[f"extraction, read-out batch {r or 'default'}"] = lambda r=r: extraction(model, tokenizer, sentences, args, r)
    fns[f"grouping, batch {args.batch_size}"] = lambda: grouping(on_device, args)
    full = []  # -start, +stop time of each full collection of Python's garbage collector while timing

    def on_gc(phase: str, info: dict) -> None:
        if info["generation"] == 2:
            full.append(time.perf_counter() * (1 if phase == "stop" else -1))

    gc.callbacks.append(on_gc)
    rates = best_rates(fns, n, args.repeats)
    device = torch.cuda.get_device_name(args.device) if torch.device(args.device).type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    mean_words = sum(s.shape[0] for s in states) / max(n, 1)
    cfg = model.config
    print(f"device {device}; model D={cfg.hidden_size} L={cfg.num_levels} T={args.iterations}; "
          f"{n} sentences, {mean_words:.1f} words on average, batch {args.batch_size}; "
          f"grouping: {args.method}, threshold {args.threshold}{', nested' if args.nested else ''}; "
          f"gc {'not frozen' if args.no_gc_freeze else f'frozen after loading ({gc.get_freeze_count()} objects)'}")
    width = max(map(len, rates))
    for name, rate in rates.items():
        print(f"  {name:<{width}} {rate:10.1f} sentences/s")
    print(f"  full garbage collections while timing: {len(full) // 2}, {1e3 * sum(full):.0f} ms in all")
    for r in readout:
        ratio = rates[f"extraction, read-out batch {r or 'default'}"] / rates["forward"]
        print(f"  extraction (read-out batch {r or 'default'}) / forward = {ratio:.2f}  (target >= 0.8: {'met' if ratio >= 0.8 else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
