"""Training speed and memory of GLOM for text, measured side by side with BERT in one run.

    python benchmarks/bench_train.py --quick                                  # smoke test, < 1 min on CPU
    python benchmarks/bench_train.py --json bench.json                        # full run on CPU
    python benchmarks/bench_train.py --device cuda --dtype bf16 --json bench.json
    python benchmarks/bench_train.py --sections utilisation profile
    python benchmarks/bench_train.py --sections utilisation --compile        # also both models compiled

Sections (see benchmarks/README.md):
    utilisation  training step of the `base` GLOM and of a BertForMaskedLM of the same width:
                 tokens/s, achieved FLOP/s (analytic FLOPs / time), utilisation against a dense matmul
    memory       peak memory of a training step for T = 5, 10, 20 iterations, with and without
                 checkpoint_iterations
    scaling      forward time (no grad) against length, local_sparse vs full reach
    profile      torch.profiler table of one training step
Every ratio is computed from numbers measured in the same run, on the same machine.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import multiprocessing as mp
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial

import numpy as np
import torch
import transformers
from transformers import BertForMaskedLM

from flops import bert_config_like, bert_train_flops, consensus_pairs, glom_train_flops, masked_count
from glomtext import GlomTextConfig, GlomTextForMaskedLM, GlomTextModel
from glomtext.pretrain import PRESETS, reuse_large_allocations

SECTIONS = ("utilisation", "memory", "scaling", "profile")
VOCAB_SIZE = 8000
MAX_POSITIONS = 1024  # the scaling section goes up to 1024 pieces
MASK_FRACTION = 0.15
MASK_ID = 4  # any id will do: the other ids are random


@dataclass(frozen=True)
class Sizes:
    """How big each section is and how often it repeats (the full run, or --quick)."""

    batch_size: int = 32
    seq_len: int = 64
    warmup: int = 2
    repeats: int = 5
    matmul_n: int = 2048  # the dense-matmul reference on CPU
    gpu_matmul_n: int = 8192  # a GPU needs a bigger one to reach its peak
    memory_batch_size: int = 32
    memory_iterations: tuple[int, ...] = (5, 10, 20)
    scaling_lengths: tuple[int, ...] = (128, 256, 512, 1024)
    scaling_batch_size: int = 1
    scaling_iterations: int = PRESETS["base"]["num_iterations"]


QUICK = Sizes(batch_size=2, seq_len=32, warmup=1, repeats=2, matmul_n=512, gpu_matmul_n=4096, memory_batch_size=1,
              memory_iterations=(5, 20), scaling_iterations=2)


# ----------------------------------------------------------------------------------------------
# models, batches, timing


def glom_config(**overrides) -> GlomTextConfig:
    """The `base` preset (hidden 256, 5 levels, 10 iterations) with the benchmark's vocabulary."""
    fields = {**PRESETS["base"], "vocab_size": VOCAB_SIZE, "max_position_embeddings": MAX_POSITIONS, **overrides}
    return GlomTextConfig(**fields)


def mlm_batch(batch_size: int, seq_len: int, device: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random piece ids with exactly `masked_count(...)` positions masked and labelled (the rest -100)."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, VOCAB_SIZE, (batch_size, seq_len), generator=g)
    labels = torch.full_like(ids, -100)
    chosen = torch.randperm(ids.numel(), generator=g)[: masked_count(batch_size, seq_len, MASK_FRACTION)]
    labels.view(-1)[chosen] = ids.view(-1)[chosen]
    ids.view(-1)[chosen] = MASK_ID
    batch = dict(input_ids=ids, attention_mask=torch.ones_like(ids), labels=labels)
    return {k: v.to(device) for k, v in batch.items()}


def autocast(device: str, dtype: str):
    """bf16 runs under torch.autocast (weights stay fp32, matmuls run in bf16); fp32 runs as is."""
    return torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=dtype == "bf16")


def train_step(model: torch.nn.Module, batch: dict, device: str, dtype: str) -> Callable[[], None]:
    """A closure running one forward + backward + AdamW step of `model` on `batch`."""
    model.to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step() -> None:
        with autocast(device, dtype):
            loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def median_seconds(fn: Callable[[], object], device: str, warmup: int, repeats: int) -> float:
    """Median wall time of `repeats` calls of fn after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def dense_matmul_flops(device: str, dtype: str, n: int, repeats: int) -> float:
    """FLOP/s of an n x n x n matmul in the benchmark's dtype: the machine's practical peak."""
    torch_dtype = torch.bfloat16 if dtype == "bf16" else torch.float32
    a, b = (torch.randn(n, n, device=device, dtype=torch_dtype) for _ in range(2))
    return 2 * n**3 / median_seconds(lambda: a @ b, device, warmup=2, repeats=repeats)


# ----------------------------------------------------------------------------------------------
# environment


def device_name(device: str) -> str:
    if device == "cuda":
        return torch.cuda.get_device_name()
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        return f"{names[0]} ({len(names)} logical cores)" if names else platform.processor()
    except OSError:
        return platform.processor() or platform.machine()


def environment(args: argparse.Namespace) -> dict:
    env = dict(device=args.device, device_name=device_name(args.device), dtype=args.dtype, quick=args.quick,
               torch=torch.__version__, transformers=transformers.__version__, python=platform.python_version(),
               torch_threads=torch.get_num_threads(), float32_matmul_precision=torch.get_float32_matmul_precision(),
               malloc_reuse=args.malloc_reuse)
    if args.device == "cuda":
        env["cuda"] = torch.version.cuda
    return env


# ----------------------------------------------------------------------------------------------
# a. utilisation


def measure_training(models: dict[str, tuple[torch.nn.Module, int]], sizes: Sizes, args, dense: float) -> dict[str, dict]:
    """Time training steps of several models, interleaved (one step of each in turn, so that a slow
    spell of the machine hits all of them alike), and turn the median step time of each into
    tokens/s, FLOP/s and utilisation. models: name -> (model, analytic FLOPs of one step)."""
    batch = mlm_batch(sizes.batch_size, sizes.seq_len, args.device)
    steps = {name: train_step(model, batch, args.device, args.dtype) for name, (model, _) in models.items()}
    for step in steps.values():  # warm-up (and compilation) outside the timing
        for _ in range(sizes.warmup):
            step()
    times = {name: [] for name in steps}
    for _ in range(sizes.repeats):
        for name, step in steps.items():
            times[name].append(median_seconds(step, args.device, warmup=0, repeats=1))
    rows = {}
    for name, (_, flops) in models.items():
        seconds = statistics.median(times[name])
        rows[name] = row = dict(step_s=seconds, tokens_per_s=sizes.batch_size * sizes.seq_len / seconds, step_gflop=flops / 1e9,
                                achieved_gflops=flops / seconds / 1e9, utilisation=flops / seconds / dense)
        print(f"  {name:<6} {row['step_s']:8.3f} {row['tokens_per_s']:10.0f} {row['step_gflop']:10.1f} "
              f"{row['achieved_gflops']:12.1f} {row['utilisation']:12.3f}", flush=True)
    return rows


def section_utilisation(args, sizes: Sizes) -> dict:
    B, N = sizes.batch_size, sizes.seq_len
    torch.manual_seed(0)
    glom_cfg = glom_config()
    bert_cfg = bert_config_like(glom_cfg)
    glom_flops = glom_train_flops(glom_cfg, B, N, MASK_FRACTION)
    n = sizes.gpu_matmul_n if args.device == "cuda" else sizes.matmul_n
    dense = dense_matmul_flops(args.device, args.dtype, n, repeats=10)
    glom_model, bert_model = GlomTextForMaskedLM(glom_cfg), BertForMaskedLM(bert_cfg)
    dense_layout, pairs = consensus_pairs(glom_cfg, N)
    print(f"batch {B} x {N} pieces, {MASK_FRACTION:.0%} masked; GLOM consensus layout "
          f"{'dense' if dense_layout else 'blocked'} ({pairs[-1] / N:.0f} keys/query at the top level); BERT {bert_cfg.num_hidden_layers} layers, "
          f"{bert_cfg.num_attention_heads} heads, intermediate {bert_cfg.intermediate_size}, "
          f"attention {bert_model.config._attn_implementation}")
    print(f"  dense {n}^3 matmul ({args.dtype}): {dense / 1e9:.1f} GFLOP/s")
    print(f"  {'model':<6} {'step_s':>8} {'tokens/s':>10} {'GFLOP/step':>10} {'GFLOP/s':>12} {'utilisation':>12}")
    bert_flops = bert_train_flops(bert_cfg, B, N).total
    models = dict(glom=(glom_model, glom_flops.total), bert=(bert_model, bert_flops))
    pairs = [("glom", "bert")]
    if args.compile:  # compilation happens in the untimed warm-up steps
        torch.manual_seed(0)
        compiled = GlomTextForMaskedLM(glom_cfg)
        compiled.glomtext.settling.compile()  # what pretrain --torch_compile does
        models.update({"glom+c": (compiled, glom_flops.total), "bert+c": (torch.compile(BertForMaskedLM(bert_cfg)), bert_flops)})
        pairs += [("glom+c", "bert+c"), ("glom+c", "bert")]
    rows = measure_training(models, sizes, args, dense)
    parts = ", ".join(f"{k} {v / glom_flops.total:.0%}" for k, v in glom_flops.by_part().items())
    print(f"  GLOM FLOPs by part: {parts}")
    ratios = {}
    for g, b in pairs:
        ratios[f"{g}/{b}"] = dict(utilisation_ratio=rows[g]["utilisation"] / rows[b]["utilisation"],
                                  tokens_per_s_ratio=rows[g]["tokens_per_s"] / rows[b]["tokens_per_s"])
        print(f"  {g}/{b}: utilisation ratio {ratios[f'{g}/{b}']['utilisation_ratio']:.3f} (target >= 0.8), "
              f"tokens/s ratio {ratios[f'{g}/{b}']['tokens_per_s_ratio']:.3f}")
    if args.compile:
        print("  (+c: torch.compile; GLOM compiles its settling step, BERT the whole model)")
    return dict(batch_size=B, seq_len=N, dense_matmul_n=n, dense_matmul_gflops=dense / 1e9, **rows,
                glom_gflop_by_part={k: v / 1e9 for k, v in glom_flops.by_part().items()}, ratios=ratios)


# ----------------------------------------------------------------------------------------------
# b. memory


def _proc_status_bytes(field: str) -> int:
    """A `kB` field of /proc/self/status (VmRSS: resident now, VmHWM: peak resident) in bytes."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/self/status has no {field} line")


def start_peak(device: str) -> int:
    """Start a fresh peak-memory measurement; returns the memory in use now (bytes).

    CPU: return freed heap pages to the OS (malloc_trim) and reset the peak-RSS mark (writing 5 to
    /proc/self/clear_refs, Linux), so the peak that follows belongs to the next step only.
    """
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        return torch.cuda.memory_allocated()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return _proc_status_bytes("VmRSS")


def peak_bytes(device: str) -> int:
    return torch.cuda.max_memory_allocated() if device == "cuda" else _proc_status_bytes("VmHWM")


def step_memory(device: str, dtype: str, iterations: int, checkpointing: bool, batch_size: int, seq_len: int,
                threads: int) -> dict:
    """Peak memory of one training step of the base GLOM with T = `iterations`.

    One warm-up step first allocates the optimizer state, so the measured step's growth is the
    activations and gradients of the step. On CPU this runs in a fresh process (see `isolated`), with
    blocks of 64 KiB and more allocated by mmap so that freeing them lowers the RSS at once: peak RSS
    then follows the live tensors instead of the malloc heap's high-water mark.
    """
    torch.set_num_threads(threads)
    if device == "cpu":
        ctypes.CDLL("libc.so.6").mallopt(-3, 64 * 1024)  # -3 = M_MMAP_THRESHOLD
    torch.manual_seed(0)
    model = GlomTextForMaskedLM(glom_config(num_iterations=iterations, checkpoint_iterations=checkpointing))
    step = train_step(model, mlm_batch(batch_size, seq_len, device), device, dtype)
    step()
    before = start_peak(device)
    step()
    synchronize(device)
    peak = peak_bytes(device)
    return dict(iterations=iterations, checkpointing=checkpointing, peak_mb=peak / 2**20, growth_mb=(peak - before) / 2**20)


def isolated(fn: Callable, *args):
    """Run fn(*args) in a fresh process forked from a server that has already imported this module
    (and torch), so every measurement starts clean without paying the imports again."""
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["__main__"])
    with ctx.Pool(1) as pool:
        return pool.apply(fn, args)


def section_memory(args, sizes: Sizes) -> dict:
    if args.device == "cpu" and not os.path.exists("/proc/self/clear_refs"):
        raise SystemExit("the CPU memory section needs Linux (/proc/self/clear_refs); use --sections to skip it")
    where = "GPU max_memory_allocated" if args.device == "cuda" else "peak RSS, a fresh process per row"
    print(f"batch {sizes.memory_batch_size} x {sizes.seq_len} pieces; peak = {where}; growth = peak - in use before the step")
    print(f"  {'T':>3} {'checkpoint':>10} {'peak_MB':>10} {'growth_MB':>10}")
    measure = step_memory if args.device == "cuda" else partial(isolated, step_memory)
    rows = []
    for checkpointing in (False, True):
        for T in sizes.memory_iterations:
            row = measure(args.device, args.dtype, T, checkpointing, sizes.memory_batch_size, sizes.seq_len,
                          torch.get_num_threads())
            print(f"  {T:>3} {str(checkpointing):>10} {row['peak_mb']:10.1f} {row['growth_mb']:10.1f}", flush=True)
            rows.append(row)
    ckpt = {r["iterations"]: r for r in rows if r["checkpointing"]}
    lo, hi = min(ckpt), max(ckpt)
    ratios = {f"peak_ratio_T{hi}_T{lo}": ckpt[hi]["peak_mb"] / ckpt[lo]["peak_mb"],
              f"growth_ratio_T{hi}_T{lo}": ckpt[hi]["growth_mb"] / ckpt[lo]["growth_mb"]}
    print(f"  with checkpointing, peak(T={hi}) / peak(T={lo}):     {ratios[f'peak_ratio_T{hi}_T{lo}']:.3f} (target <= 1.3)")
    print(f"  with checkpointing, growth(T={hi}) / growth(T={lo}): {ratios[f'growth_ratio_T{hi}_T{lo}']:.3f} "
          "(the step's own memory, without the fixed costs)")
    return dict(batch_size=sizes.memory_batch_size, seq_len=sizes.seq_len, rows=rows, **ratios)


# ----------------------------------------------------------------------------------------------
# c. scaling with length


def section_scaling(args, sizes: Sizes) -> dict:
    B, T = sizes.scaling_batch_size, sizes.scaling_iterations
    print(f"forward, no grad, batch {B}, T = {T}; seconds per forward (consensus layout, keys/query)")
    out = {}
    for reach in ("local_sparse", "full"):
        torch.manual_seed(0)
        cfg = glom_config(attention_reach=reach, num_iterations=T)
        model = GlomTextModel(cfg).to(args.device).eval()
        times = []
        for n in sizes.scaling_lengths:
            ids = mlm_batch(B, n, args.device)["input_ids"]

            def forward(ids=ids):
                with torch.no_grad(), autocast(args.device, args.dtype):
                    model(input_ids=ids)

            times.append(median_seconds(forward, args.device, warmup=1, repeats=sizes.repeats))
            dense, pairs = consensus_pairs(cfg, n)
            print(f"  {reach:<12} N={n:<5} {times[-1]:8.4f} s  ({'dense' if dense else 'blocked'}, "
                  f"{pairs[-1] / n:.0f} keys/query at the top level)", flush=True)
        lengths = sizes.scaling_lengths
        slope = float(np.polyfit(np.log(lengths), np.log(times), 1)[0])
        ratio = times[-1] / times[0]
        target = " (target <= 10)" if reach == "local_sparse" else ""
        print(f"  {reach:<12} t({lengths[-1]})/t({lengths[0]}) = {ratio:.2f}{target}, log-log slope {slope:.2f}")
        out[reach] = dict(lengths=list(lengths), seconds=times, time_ratio=ratio, exponent=slope)
    return dict(batch_size=B, iterations=T, **out)


# ----------------------------------------------------------------------------------------------
# d. profile


def section_profile(args, sizes: Sizes, top: int = 12) -> dict:
    torch.manual_seed(0)
    model = GlomTextForMaskedLM(glom_config())
    step = train_step(model, mlm_batch(sizes.batch_size, sizes.seq_len, args.device), args.device, args.dtype)
    step()  # warm-up: optimizer state, allocator, kernels
    activities = [torch.profiler.ProfilerActivity.CPU]
    if args.device == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities) as prof:
        step()
        synchronize(args.device)
    key = "self_device_time_total" if args.device == "cuda" else "self_cpu_time_total"
    events = sorted(prof.key_averages(), key=lambda e: getattr(e, key), reverse=True)[:top]
    print(f"one training step of the base GLOM, batch {sizes.batch_size} x {sizes.seq_len}, top {top} ops by self time")
    print(prof.key_averages().table(sort_by=key, row_limit=top))
    return dict(sort_by=key, top=[dict(op=e.key, self_ms=getattr(e, key) / 1e3, calls=e.count) for e in events])


# ----------------------------------------------------------------------------------------------
# main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32", help="bf16 runs the models under torch.autocast")
    p.add_argument("--quick", action="store_true", help="small batches and few repeats: a smoke test, not a measurement")
    p.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    p.add_argument("--json", default=None, metavar="PATH", help="also write all numbers to this JSON file")
    p.add_argument("--compile", action="store_true", help="utilisation: also time both models under torch.compile")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice); "
                   "1 gives steadier timings on a machine that other jobs share")
    p.add_argument("--default-malloc", action="store_true", help="CPU: keep glibc's default malloc thresholds instead "
                   "of what glomtext.pretrain sets (reuse_large_allocations), for both models")
    args = p.parse_args(argv)
    if args.threads is not None and args.threads < 1:
        p.error("--threads must be >= 1")
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: torch sees no CUDA device")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    # as in glomtext.pretrain on CPU, for every model alike (the memory section's fresh processes set their own)
    args.malloc_reuse = args.device == "cpu" and not args.default_malloc and reuse_large_allocations()
    sizes = QUICK if args.quick else Sizes()
    results = dict(environment=environment(args), sizes=asdict(sizes))
    print(" ".join(f"{k}={v}" for k, v in results["environment"].items()), flush=True)
    runners = dict(utilisation=section_utilisation, memory=section_memory, scaling=section_scaling, profile=section_profile)
    for name in SECTIONS:
        if name in args.sections:
            print(f"\n== {name} ==", flush=True)
            start = time.perf_counter()
            results[name] = runners[name](args, sizes)
            print(f"  ({time.perf_counter() - start:.0f} s)", flush=True)
    text = json.dumps(results, indent=1)
    print("\n" + text)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
