"""End-to-end pretraining runs (real corpus, real tokenizer training, real processes), tiny and short."""

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from support import needs_cxx
from transformers import AutoModelForMaskedLM, AutoTokenizer

import glomtext  # noqa: F401  (registers the Auto classes)
from glomtext.paths import data_dir

TINY = ["--corpus", "nltk:brown", "--max_train_sentences", "300", "--validation_sentences", "20",
        "--preset", "tiny", "--vocab_size", "600", "--per_device_train_batch_size", "8",
        "--max_seq_length", "32", "--logging_steps", "1", "--report_to", "none", "--seed", "7"]


def pretrain(*args: str, launcher: list[str] | None = None, check: bool = True, timeout: float = 600, **env_extra) -> subprocess.CompletedProcess:
    env = {**os.environ, "NLTK_DATA": str(data_dir() / "nltk_data"), "HF_HUB_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1", **env_extra}
    cmd = (launcher or [sys.executable, "-m"]) + ["glomtext.pretrain", *args]
    with subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True) as p:
        try:
            out, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            for pid in [*descendants(p.pid), p.pid]:  # a hung run is killed whole: launcher and workers
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            out, err = p.communicate()
            raise AssertionError(f"{cmd} still running after {timeout} s; killed. stdout:\n{out[-2000:]}\nstderr:\n{err[-3000:]}") from None
    proc = subprocess.CompletedProcess(cmd, p.returncode, out, err)
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} failed:\n{proc.stderr[-3000:]}")
    return proc


def descendants(pid: int) -> list[int]:
    """Every live descendant of pid, from the parent ids in /proc (torchrun starts each worker in a
    session of its own, so killing the launcher's process group misses them, and a worker left
    alive keeps the output pipes open)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])  # the field after "(comm) state"
            children.setdefault(ppid, []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        kids = children.get(todo.pop(), [])
        found += kids
        todo += kids
    return found


def losses(run: Path) -> dict[int, float]:
    return {r["step"]: r["train/loss"] for r in map(json.loads, (run / "train_log.jsonl").read_text().splitlines())}


@pytest.fixture(scope="module")
def full_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("full")
    pretrain("--output_dir", str(out), "--max_train_steps", "6", "--checkpointing_steps", "3", *TINY)
    return out


def test_run_writes_a_usable_model_and_tokenizer(full_run):
    for name in ("config.json", "model.safetensors", "tokenizer.json", "resolved_config.json", "train_summary.json"):
        assert (full_run / name).is_file(), name
    resolved = json.loads((full_run / "resolved_config.json").read_text())
    assert resolved["model_config"]["hidden_size"] == 64 and resolved["data"]["sentences"] > 0
    tok = AutoTokenizer.from_pretrained(full_run)
    assert tok.mask_token == "[MASK]" and len(tok) <= 600
    model = AutoModelForMaskedLM.from_pretrained(full_run).eval()
    enc = tok(["the jury said it did ."], return_tensors="pt")
    assert model(**enc).logits.shape == (1, enc.input_ids.shape[1], len(tok))
    summary = json.loads((full_run / "train_summary.json").read_text())
    assert summary["steps"] == 6 and summary["skipped_steps"] == 0
    assert sorted(losses(full_run)) == [1, 2, 3, 4, 5, 6]
    assert [p.name for p in sorted((full_run / "checkpoints").iterdir())] == ["step_3", "step_6"]


def test_resume_reproduces_an_uninterrupted_run(full_run, tmp_path):
    """Continue from the step-3 checkpoint in a fresh folder: steps 4-6 and the final weights must be
    bitwise those of the uninterrupted run."""
    resumed = tmp_path / "resumed"
    (resumed / "checkpoints").mkdir(parents=True)
    shutil.copytree(full_run / "checkpoints" / "step_3", resumed / "checkpoints" / "step_3")
    shutil.copytree(full_run / "tokenizer", resumed / "tokenizer")
    pretrain("--output_dir", str(resumed), "--max_train_steps", "6", "--resume_from_checkpoint", "latest", *TINY)
    full, again = losses(full_run), losses(resumed)
    assert sorted(again) == [4, 5, 6]
    assert [again[s] for s in (4, 5, 6)] == [full[s] for s in (4, 5, 6)]
    a, b = load_file(full_run / "model.safetensors"), load_file(resumed / "model.safetensors")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    # the resumed run's summary counts the whole run, steps 1-3 included (from the checkpoint's totals)
    first, second = (json.loads((run / "train_summary.json").read_text()) for run in (full_run, resumed))
    assert (first["resumed_from_step"], second["resumed_from_step"]) == (None, 3)
    assert second["tokens"] == first["tokens"] and second["skipped_steps"] == first["skipped_steps"] == 0
    at_step_3 = json.loads((full_run / "checkpoints" / "step_3" / "trainer_state.json").read_text())
    assert 0 < at_step_3["tokens"] < first["tokens"] and second["seconds"] > at_step_3["seconds"]


def lrs(run: Path) -> dict[int, float]:
    return {r["step"]: r["train/lr"] for r in map(json.loads, (run / "train_log.jsonl").read_text().splitlines())}


def test_resume_with_a_cool_down_changes_only_the_schedule(full_run, tmp_path):
    """Resume the step-3 checkpoint with a warmup-stable-decay schedule whose 2 decay steps end the run:
    the learning rate after steps 4, 5, 6 is 1e-3 (stable), 1e-3 * (1 - 1/2), 0. Step 4 still trains at the
    checkpoint's rate, so the losses before the first changed update (steps 4 and 5) are the full run's.
    No tokenizer folder is copied: the run takes the checkpoint's own instead of training another."""
    cool = tmp_path / "cool"
    (cool / "checkpoints").mkdir(parents=True)
    shutil.copytree(full_run / "checkpoints" / "step_3", cool / "checkpoints" / "step_3")
    pretrain("--output_dir", str(cool), "--max_train_steps", "6", "--resume_from_checkpoint", "latest", *TINY,
             "--lr_scheduler_type", "warmup_stable_decay", "--num_warmup_steps", "0",
             "--lr_scheduler_kwargs", '{"num_decay_steps": 2, "decay_type": "linear"}')
    assert lrs(cool) == pytest.approx({4: 1e-3, 5: 5e-4, 6: 0.0})
    assert lrs(full_run)[5] == pytest.approx(1e-3 / 6)  # the default linear decay it replaced
    full, again = losses(full_run), losses(cool)
    assert [again[4], again[5]] == [full[4], full[5]] and again[6] != full[6]
    assert AutoTokenizer.from_pretrained(cool / "tokenizer").get_vocab() == AutoTokenizer.from_pretrained(full_run).get_vocab()


def test_resuming_with_another_vocabulary_is_refused(full_run, tmp_path):
    from glomtext.data import train_tokenizer

    other, run = tmp_path / "other_tokenizer", tmp_path / "run"
    train_tokenizer(["an entirely different text", "with other words in it"], vocab_size=600, output_dir=str(other))
    (run / "checkpoints").mkdir(parents=True)
    shutil.copytree(full_run / "checkpoints" / "step_3", run / "checkpoints" / "step_3")
    proc = pretrain("--output_dir", str(run), "--max_train_steps", "6", "--resume_from_checkpoint", "latest", *TINY,
                    "--tokenizer_name", str(other), check=False)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "step_3 was trained with another vocabulary" in proc.stderr and "--tokenizer_name" in proc.stderr


def test_bad_scheduler_arguments_are_clear_errors(tmp_path):
    proc = pretrain("--output_dir", str(tmp_path / "a"), *TINY, "--lr_scheduler_kwargs", "{num_decay_steps: 2}", check=False)
    assert proc.returncode == 2 and "--lr_scheduler_kwargs: not JSON" in proc.stderr
    proc = pretrain("--output_dir", str(tmp_path / "b"), "--max_train_steps", "2", *TINY, "--lr_scheduler_type", "cosine",
                    "--lr_scheduler_kwargs", '{"num_decay_steps": 2}', check=False)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "--lr_scheduler_type cosine" in proc.stderr and "num_decay_steps" in proc.stderr


@needs_cxx
def test_compiled_run_follows_the_eager_run(full_run, tmp_path):
    """--torch_compile with the same tokenizer and seed: the same losses, up to float rounding."""
    compiled = tmp_path / "compiled"
    compiled.mkdir()
    shutil.copytree(full_run / "tokenizer", compiled / "tokenizer")
    pretrain("--output_dir", str(compiled), "--max_train_steps", "6", "--torch_compile", *TINY)
    eager, again = losses(full_run), losses(compiled)
    assert sorted(again) == sorted(eager) == [1, 2, 3, 4, 5, 6]
    assert [again[s] for s in sorted(again)] == pytest.approx([eager[s] for s in sorted(eager)], abs=1e-4)


def test_second_run_refuses_to_clobber_the_first(full_run):
    proc = pretrain("--output_dir", str(full_run), "--max_train_steps", "1", *TINY, check=False)
    assert proc.returncode != 0
    assert "already holds a run" in proc.stderr and "--overwrite_output_dir" in proc.stderr


def test_missing_train_file_is_a_clear_error(tmp_path):
    proc = pretrain("--output_dir", str(tmp_path / "o"), "--train_file", str(tmp_path / "nope.txt"), check=False)
    assert proc.returncode != 0
    assert "nope.txt" in proc.stderr and "Traceback" not in proc.stderr


def test_bad_config_override_is_a_clear_error(tmp_path):
    proc = pretrain("--output_dir", str(tmp_path / "o"), *TINY, "--config_overrides", "num_levels=1", check=False)
    assert proc.returncode != 0 and "num_levels must be >= 2" in proc.stderr and "Traceback" not in proc.stderr


def test_config_overrides_parse_json_values_and_lists():
    from glomtext.pretrain import parse_overrides

    assert parse_overrides("consensus_beta=[8,12.5,16],attention_reach=full,learn_beta=false,num_levels=3") == {
        "consensus_beta": [8, 12.5, 16], "attention_reach": "full", "learn_beta": False, "num_levels": 3}
    assert parse_overrides(None) == {}
    with pytest.raises(SystemExit, match="'no_such_field' is not a GlomTextConfig field"):
        parse_overrides("no_such_field=1")
    with pytest.raises(SystemExit, match=r"got '12' \(a list value goes in brackets"):
        parse_overrides("consensus_beta=[8,12")


@pytest.mark.slow
def test_two_process_training_agrees(tmp_path):
    """Real data-parallel training: 2 CPU processes (torchrun, gloo), each on its own shard."""
    out = tmp_path / "ddp"
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m"]
    pretrain("--output_dir", str(out), "--max_train_steps", "3", *TINY, launcher=launcher, timeout=300, ACCELERATE_USE_CPU="1")
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["num_processes"] == 2
    checksums = summary["param_checksums"]
    assert len(checksums) == 2 and checksums[0] == checksums[1]
    assert sorted(losses(out)) == [1, 2, 3]


FAULTS_PER_BIG_TENSOR = """
import resource, sys, torch
from glomtext.pretrain import reuse_large_allocations
def faults():  # minor page faults per allocation of a 48 MiB tensor (above glibc's largest mmap threshold)
    for _ in range(2):
        torch.empty(12 << 20).fill_(1.0)
    start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(5):
        torch.empty(12 << 20).fill_(1.0)
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - start) / 5
before = faults()
applied = reuse_large_allocations()
print(before, faults(), applied)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc tuning is Linux-only")
def test_reuse_large_allocations_stops_refaulting_big_tensors():
    # a fresh process: the tuning is process-wide and must not leak into this one
    out = subprocess.run([sys.executable, "-c", FAULTS_PER_BIG_TENSOR], capture_output=True, text=True, check=True).stdout
    before, after, applied = out.split()
    assert applied == "True"
    assert float(before) > 10_000  # every allocation mapped afresh: 12,288 pages of 4 KiB touched
    assert float(after) < 0.3 * float(before)  # served from the heap, its pages already resident


HEAP_GROWTH = """
import torch
from glomtext.pretrain import HeapGrowthLimit, reuse_large_allocations, resident_bytes
assert reuse_large_allocations()
heap = HeapGrowthLimit(growth=1.5, settle_steps=1)
heap.step_done()  # the limit: 1.5 x the RSS now
x = torch.empty(128 << 20).fill_(1.0)  # 512 MiB from the heap, kept by it when freed
del x
held = resident_bytes()
heap.step_done()
trimmed = resident_bytes()
heap.step_done()  # back under the limit: no second trim
print(heap.limit, held, trimmed, heap.trims)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc tuning is Linux-only")
def test_heap_growth_limit_gives_freed_blocks_back_past_its_limit():
    out = subprocess.run([sys.executable, "-c", HEAP_GROWTH], capture_output=True, text=True, check=True).stdout
    limit, held, trimmed, trims = map(float, out.split())
    assert held > limit  # the freed 512 MiB stayed resident
    assert held - trimmed > 400 * 2**20 and trimmed < limit  # malloc_trim gave it back
    assert trims == 1


def test_a_vocabulary_without_room_for_words_is_a_usage_error(capsys):
    from glomtext.pretrain import parse_args

    with pytest.raises(SystemExit):
        parse_args(["--output_dir", "x", "--tokenizer_type", "word", "--vocab_size", "5"])
    assert "--vocab_size must be > 5" in capsys.readouterr().err
    assert parse_args(["--output_dir", "x", "--tokenizer_type", "word", "--vocab_size", "6"]).tokenizer_type == "word"
    with pytest.raises(SystemExit):  # a given tokenizer is not trained, so the type would be silently ignored
        parse_args(["--output_dir", "x", "--tokenizer_type", "word", "--tokenizer_name", "runs/tok"])
    assert "--tokenizer_type applies to a tokenizer trained from scratch" in capsys.readouterr().err


def test_prefix_lm_arguments_are_usage_errors_when_out_of_range(capsys):
    from glomtext.pretrain import parse_args

    with pytest.raises(SystemExit):
        parse_args(["--output_dir", "x", "--prefix_lm_prob", "1.5"])
    assert "--prefix_lm_prob must be in [0, 1]" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse_args(["--output_dir", "x", "--prefix_lm_prob", "0.5", "--prefix_lm_direction", "sideways"])
    assert "invalid choice: 'sideways'" in capsys.readouterr().err
    args = parse_args(["--output_dir", "x", "--prefix_lm_prob", "0.5", "--prefix_lm_direction", "both"])
    assert (args.prefix_lm_prob, args.prefix_lm_direction) == (0.5, "both")


def test_word_corruption_needs_whole_word_masking(capsys):
    from glomtext.pretrain import parse_args

    with pytest.raises(SystemExit):
        parse_args(["--output_dir", "x", "--word_corruption", "bert"])
    assert "--word_corruption bert needs --whole_word_mask" in capsys.readouterr().err
    assert parse_args(["--output_dir", "x", "--whole_word_mask", "--word_corruption", "bert"]).word_corruption == "bert"
    assert parse_args(["--output_dir", "x"]).word_corruption == "mask"


def test_bf16_on_a_cpu_without_bf16_instructions_is_flagged(tmp_path):
    from glomtext.pretrain import bf16_is_emulated, cpu_flags

    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 fma\n\nprocessor\t: 1\nflags\t\t: fpu sse2 avx2 fma\n")
    flags = cpu_flags(str(info))
    assert flags == {"fpu", "sse2", "avx2", "fma"}
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert bf16_is_emulated(cpu, "bf16", flags)
    assert not bf16_is_emulated(cpu, "no", flags) and not bf16_is_emulated(cuda, "bf16", flags)
    assert not bf16_is_emulated(cpu, "bf16", flags | {"amx_bf16"}) and not bf16_is_emulated(cpu, "bf16", flags | {"avx512_bf16"})
    assert cpu_flags(str(tmp_path / "missing")) == set() and not bf16_is_emulated(cpu, "bf16", set())  # unknown: no warning
