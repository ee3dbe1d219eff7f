"""Training faults, really inflicted on real pretraining runs in subprocesses (see RELIABILITY.md).

kill -9 at seeded moments (during training, as a checkpoint save begins, halfway through a save),
a corrupt newest checkpoint, NaN losses, a write that fails mid-save, an unwritable output folder,
two runs on one folder. The runs are tiny (test_pretrain.py's TINY settings, 12 steps); after every
fault the resumed run must end with weights bitwise equal to one uninterrupted run.

Every run here starts with the baseline's tokenizer in its folder (pretrain reuses
OUTPUT_DIR/tokenizer): training a WordPiece vocabulary with HF tokenizers is not deterministic
across processes (token ids of equal-count pieces follow Rust's randomly seeded hash order), so two
fresh runs would differ from step 1 for that reason alone.
"""

import json
import os
import random
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from test_pretrain import TINY, losses, pretrain

from glomtext.paths import data_dir
from glomtext.pretrain import (
    LOCK_FILE,
    MANIFEST,
    check_disk_space,
    checkpoint_dirs,
    checkpoint_problem,
    find_resume_dir,
    write_manifest,
)

RUN = ["--max_train_steps", "12", "--checkpointing_steps", "3", *TINY]  # checkpoints at 3, 6, 9, 12; the last 3 kept
RESUME = ["--resume_from_checkpoint", "latest", *RUN]

# seeded kill moments: one ordinary step, and one checkpoint step (killed as soon as it is logged,
# i.e. as its save begins)
_rng = random.Random(6)
KILL_STEPS = [_rng.choice([4, 5, 7, 8, 10, 11]), _rng.choice([6, 9])]


def start(out: Path, **env_extra) -> subprocess.Popen:
    """A training run in the background (stderr to a file next to ``out``)."""
    env = {**os.environ, "NLTK_DATA": str(data_dir() / "nltk_data"), "HF_HUB_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1", **env_extra}
    with open(out.parent / f"{out.name}.stderr", "w") as stderr:  # the child keeps its own copy of the handle
        return subprocess.Popen([sys.executable, "-m", "glomtext.pretrain", "--output_dir", str(out), *RUN],
                                env=env, stdout=subprocess.DEVNULL, stderr=stderr)


def wait_for(condition, proc: subprocess.Popen, timeout: float = 300) -> None:
    """Poll ``condition`` every 2 ms while ``proc`` runs."""
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(f"the run ended (code {proc.returncode}) before the moment to kill it")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("timed out waiting for the moment to kill the run")
        time.sleep(0.002)


def kill_9(proc: subprocess.Popen) -> None:
    proc.kill()  # SIGKILL
    assert proc.wait() == -9


def logged_steps(run: Path) -> list[int]:
    """Steps in train_log.jsonl in the order written (a resumed run appends from its checkpoint on)."""
    path = run / "train_log.jsonl"
    lines = path.read_text().splitlines() if path.is_file() else []
    return [json.loads(line)["step"] for line in lines if line.endswith("}")]


def steps_after_resume(run: Path) -> list[int]:
    """The steps logged by the last run in ``run`` (each run appends, starting after its checkpoint)."""
    steps = logged_steps(run)
    restarts = [i for i in range(1, len(steps)) if steps[i] <= steps[i - 1]]
    return steps[restarts[-1] if restarts else 0 :]


def assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def assert_resumed_like_baseline(run: Path, baseline: Path, from_step: int) -> None:
    """Steps from_step+1 .. 12 were retrained with the baseline's exact losses and final weights."""
    assert steps_after_resume(run) == list(range(from_step + 1, 13))
    full, again = losses(baseline), losses(run)
    assert [again[s] for s in range(from_step + 1, 13)] == [full[s] for s in range(from_step + 1, 13)]
    assert_same_weights(run, baseline)
    assert (run / LOCK_FILE).read_text() == ""  # released: an empty lock file


def copy_run(baseline: Path, to: Path, checkpoints: list[str]) -> Path:
    """A fresh output folder holding the baseline's tokenizer and some of its checkpoints."""
    shutil.copytree(baseline / "tokenizer", to / "tokenizer")
    for name in checkpoints:
        shutil.copytree(baseline / "checkpoints" / name, to / "checkpoints" / name)
    return to


@pytest.fixture(scope="module")
def baseline(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("baseline") / "run"
    pretrain("--output_dir", str(out), *RUN)
    assert [d.name for d in checkpoint_dirs(out)] == ["step_6", "step_9", "step_12"]
    return out


def test_every_checkpoint_is_also_a_model_directory(baseline):
    from glomtext.islands import load_model

    model, tokenizer = load_model(baseline / "checkpoints" / "step_12")  # the last step: the final model's weights
    final, final_tokenizer = load_model(baseline)
    weights, final_weights = model.state_dict(), final.state_dict()
    assert weights.keys() == final_weights.keys() and all(torch.equal(v, final_weights[k]) for k, v in weights.items())
    assert tokenizer.get_vocab() == final_tokenizer.get_vocab()
    earlier, _ = load_model(baseline / "checkpoints" / "step_6")
    assert not torch.equal(earlier.state_dict()["settling.level_embeddings"], final_weights["settling.level_embeddings"])


# ------------------------------------------------------------------------------------ kill -9


@pytest.mark.parametrize("kill_step", KILL_STEPS)
def test_kill_9_during_training_then_resume_matches_an_uninterrupted_run(baseline, tmp_path, kill_step):
    out = copy_run(baseline, tmp_path / "run", [])
    proc = start(out)
    wait_for(lambda: kill_step in logged_steps(out), proc)
    kill_9(proc)
    before_kill = losses(out)
    assert before_kill == {s: losses(baseline)[s] for s in before_kill}  # same run as the baseline until the kill
    sealed = checkpoint_dirs(out)
    assert sealed and all(checkpoint_problem(d) is None for d in sealed)  # whatever is listed is whole
    resumed = pretrain("--output_dir", str(out), *RESUME)
    assert "did not finish" in resumed.stderr and "taking it over" in resumed.stderr  # the dead run's lock
    assert_resumed_like_baseline(out, baseline, from_step=int(sealed[-1].name.split("_")[1]))


def test_kill_9_halfway_through_a_save_and_a_second_run_is_refused_meanwhile(baseline, tmp_path):
    """The run pauses inside the save of step 6 (GLOMTEXT_FAULT_PAUSE_IN_SAVE, after the state files,
    before the manifest). Meanwhile a second run on the folder is refused; then the first is killed."""
    out = copy_run(baseline, tmp_path / "run", [])
    half_written = out / "checkpoints" / ".tmp_step_6"
    proc = start(out, GLOMTEXT_FAULT_PAUSE_IN_SAVE="6")
    wait_for(half_written.is_dir, proc)
    second = pretrain("--output_dir", str(out), *RESUME, check=False)
    assert second.returncode == 1 and "Traceback" not in second.stderr
    assert f"{out} is in use by another run (pid {proc.pid} on " in second.stderr
    kill_9(proc)
    assert [d.name for d in checkpoint_dirs(out)] == ["step_3"]  # the half-written step 6 is not a checkpoint
    assert not (half_written / MANIFEST).exists()
    resumed = pretrain("--output_dir", str(out), *RESUME)
    assert f"removing {half_written}, a checkpoint whose writing was interrupted" in resumed.stderr
    assert_resumed_like_baseline(out, baseline, from_step=3)


def test_a_corrupt_newest_checkpoint_is_skipped_for_the_one_before(baseline, tmp_path):
    out = copy_run(baseline, tmp_path / "run", ["step_9", "step_12"])
    optimizer = out / "checkpoints" / "step_12" / "optimizer.bin"
    data = bytearray(optimizer.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte, same size: only the sha256 can tell
    optimizer.write_bytes(bytes(data))
    resumed = pretrain("--output_dir", str(out), *RESUME)
    assert f"skipping checkpoint {out / 'checkpoints' / 'step_12'}: optimizer.bin does not match its sha256" in resumed.stderr
    assert_resumed_like_baseline(out, baseline, from_step=9)
    assert checkpoint_problem(out / "checkpoints" / "step_12") is None  # rewritten whole


def test_checkpoint_verification_names_each_problem(baseline, tmp_path):
    good = baseline / "checkpoints" / "step_12"
    assert checkpoint_problem(good) is None and find_resume_dir(baseline, "latest") == good
    cases = {
        "truncated": (lambda d: (d / "model.safetensors").write_bytes((d / "model.safetensors").read_bytes()[:1000]),
                      "model.safetensors has 1000 bytes, the manifest says 671876"),
        "missing": (lambda d: (d / "scheduler.bin").unlink(), "scheduler.bin is missing"),
        "unsealed": (lambda d: (d / MANIFEST).unlink(), f"no readable {MANIFEST}"),
    }
    for name, (damage, problem) in cases.items():
        ckpt = shutil.copytree(good, tmp_path / name)
        damage(ckpt)
        assert problem in checkpoint_problem(ckpt)
        with pytest.raises(SystemExit, match=f"--resume_from_checkpoint: {ckpt} is not a usable checkpoint: {problem}"):
            find_resume_dir(tmp_path, str(ckpt))
    with pytest.raises(SystemExit, match="no complete checkpoint"):
        find_resume_dir(tmp_path, "latest")


class RunsCode:
    """Unpickling this calls print("PWNED"): what a malicious checkpoint file could do."""

    def __reduce__(self):
        return print, ("PWNED",)


def test_a_pickle_that_runs_code_in_a_checkpoint_is_refused(baseline, tmp_path):
    """optimizer.bin replaced by a pickle that would run code, the manifest rewritten to match: the
    trainer state is loaded with weights_only=True, so the load fails and nothing runs."""
    out = copy_run(baseline, tmp_path / "run", ["step_9"])
    ckpt = out / "checkpoints" / "step_9"
    torch.save({"state": RunsCode(), "param_groups": []}, ckpt / "optimizer.bin")
    write_manifest(ckpt)
    proc = pretrain("--output_dir", str(out), *RESUME, check=False)
    assert proc.returncode == 1 and "PWNED" not in proc.stdout + proc.stderr and "Traceback" not in proc.stderr
    assert f"cannot load checkpoint {ckpt}: Weights only load failed" in proc.stderr


# ------------------------------------------------------------------------------ other faults


def test_nonfinite_steps_are_skipped_and_counted_then_stop_the_run(tmp_path):
    """NaN loss at step 2 (skipped, the run goes on) and at 5, 6, 7 (3 in a row: stop)."""
    out = tmp_path / "run"
    proc = pretrain("--output_dir", str(out), "--max_train_steps", "12", "--checkpointing_steps", "4",
                    "--max_nonfinite_steps", "3", *TINY, check=False, GLOMTEXT_FAULT_NONFINITE_STEPS="2,5,6,7")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "step 2: non-finite loss/gradients, update skipped (1 in a row)" in proc.stderr
    assert "step 7: non-finite loss/gradients, update skipped (3 in a row)" in proc.stderr
    last_good = out / "checkpoints" / "step_4"
    assert f"stopping at step 7: 3 non-finite steps in a row (--max_nonfinite_steps); last good checkpoint: {last_good}" in proc.stderr
    assert checkpoint_dirs(out) == [last_good] and checkpoint_problem(last_good) is None
    log = {r["step"]: r for r in map(json.loads, (out / "train_log.jsonl").read_text().splitlines())}
    assert sorted(log) == [1, 2, 3, 4, 5, 6]  # step 7 stopped the run before its log line
    assert [log[s]["train/skipped_steps"] for s in range(1, 7)] == [0, 1, 1, 1, 2, 3]
    lr = [log[s]["train/lr"] for s in range(1, 7)]
    assert lr[1] == lr[0] and lr[5] == lr[4] == lr[3] and lr[2] < lr[1]  # no schedule step on a skipped step
    assert (out / LOCK_FILE).read_text() == ""


def test_a_write_failing_mid_save_stops_cleanly_and_keeps_the_previous_checkpoint(baseline, tmp_path):
    """A full disk, simulated with a per-process file-size limit (RLIMIT_FSIZE, 1 MB): the kernel fails
    the write of optimizer.bin (1.36 MB) halfway, as a full disk would (EFBIG instead of ENOSPC)."""
    out = copy_run(baseline, tmp_path / "run", ["step_6"])

    def limit_file_size():  # runs in the child, before it starts Python
        resource.setrlimit(resource.RLIMIT_FSIZE, (1_000_000, 1_000_000))

    env = {**os.environ, "NLTK_DATA": str(data_dir() / "nltk_data"), "HF_HUB_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "glomtext.pretrain", "--output_dir", str(out), *RESUME], env=env,
                          preexec_fn=limit_file_size, capture_output=True, text=True, timeout=600, check=False)
    previous = out / "checkpoints" / "step_6"
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert f"could not write checkpoint {out / 'checkpoints' / 'step_9'}: " in proc.stderr
    assert f"the previous checkpoint {previous} is intact" in proc.stderr
    assert checkpoint_dirs(out) == [previous] and checkpoint_problem(previous) is None
    assert not (out / "checkpoints" / ".tmp_step_9").exists() and (out / LOCK_FILE).read_text() == ""


def test_an_unwritable_output_dir_is_a_clear_error_before_any_work(tmp_path):
    (tmp_path / "a_file").write_text("not a folder")
    target = tmp_path / "a_file" / "run"  # root ignores permissions, but not a file in the path
    proc = pretrain("--output_dir", str(target), *RUN, check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == f"--output_dir {target} is not writable: [Errno 20] Not a directory: '{target}'"


def test_not_enough_disk_for_a_checkpoint_is_refused_before_training(tmp_path):
    huge = torch.nn.Linear(1_000_000, 1_000_000, bias=False, device="meta")  # 4 TB of weights, none allocated
    with pytest.raises(SystemExit, match=r"MB free, but the model and one checkpoint need about 16000000\.0 MB"):
        check_disk_space(tmp_path, huge, checkpointing=True)
    check_disk_space(tmp_path, torch.nn.Linear(10, 10), checkpointing=True)  # a small model fits
