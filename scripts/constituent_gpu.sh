#!/usr/bin/env bash
# Issue 7 at GPU scale: the recipe of constituent_cpu.sh (small preset, consensus_prior=constituent_learned, no island
# regulariser) on ~9M words of NLTK corpora (WSJ-sample sentences excluded, 8k WordPiece), batch 256 x <= 64 pieces,
# bf16, learning rate 1e-3 held constant after 200 warm-up steps, MIN minutes of training per run. One arm per masking
# scheme, SEEDS seeds each, all runs side by side on one GPU; then every model is scored with the links read-out.
#   ARMS="W S" (default; W: whole-word masking, S: span masking)   SEEDS="0 1 2 3"   MIN=6.5   BATCH=256
#   HALVES=dev (default: a screen that must not see the test half; "dev test" for both)   OUT=runs/constituent_gpu
#   PRECISION=bf16 (default; "no" for float32, e.g. on a CPU: ARMS=W SEEDS=0 BATCH=32 MIN=25 PRECISION=no runs it on 2 cores)
# On 2 CPU cores at the GPU's batch (README, "The CPU recipe"): ARMS=W SEEDS="1 2" BATCH=256 STEPS=436 MIN=1000 OMP_NUM_THREADS=1
#   OVERRIDES=checkpoint_iterations=true (two runs side by side in 7-8 GB, ~110 min, bf16 on the CPU's matrix units).
#   At that scale TRAIN_ARGS="--learning_rate 2e-3" lowers the loss, not the trees beyond the seeds' spread (README, "The CPU recipe").
#   The GPU's full token budget there: STEPS=872 OMP_NUM_THREADS=2 (75 min on a CPU with avx512_bf16; 9 GB; README, "The CPU recipe");
#   then RESUME=1 STEPS=2600 continues it to 3 times that budget, where its trees level off (STEPS=3000, with or without
#   COOLDOWN=400: README, "The CPU recipe").
# Three stages, each skipped when its output exists, so that they can run on different machines (the README's figures
# did: 1 and 3 on 2 CPU cores, 2 on one H200 with the corpus and tokenizer carried over):
#   1. OUT/corpus.txt and OUT/tokenizer (scripts/export_corpus.py; needs the NLTK data of GLOMTEXT_DATA)
#   2. the runs, OUT/W0, OUT/S0, ... (a CUDA GPU at the default sizes; a finished run is not trained again)
#   3. the scores, OUT/eval_{half}_[...]{run} (named below), and their mean +- sd per arm (CPU is fine)
# STAGES="1 2 3" (default) picks the stages to run, e.g. STAGES=2 on the GPU machine and STAGES=3 back on a CPU.
# Variants for stage 2: STEPS=N also stops each run after N steps; OVERRIDES=k=v,... more config overrides (e.g.
# attention_reach=full); TRAIN_ARGS="..." more pretraining flags (e.g. --mlm_probability 0.3). RESUME=1 continues each
# run from its latest checkpoint up to STEPS, its log appended (the learning rate is constant, so this is the longer run).
# COOLDOWN=N (with STEPS) lets the learning rate fall linearly to 0 over the last N steps (warmup_stable_decay); with
# RESUME=1 it gives a constant run a cool-down to STEPS.
# TREE_READOUT=links (default; or links_top_down, links_average, cosine) and RIGHT_SKEW=B (a labelled branching prior, separate rows) for stage 3;
# SETTLE="arithmetic open" (default: the read-out chosen on the dev half) settles the models with that link_mean and
# link_choice at inference (glomtext eval --link-mean --link-choice); SETTLE=none settles them as they were trained.
set -euo pipefail
cd "$(dirname "$0")/.."
export GLOMTEXT_DATA="${GLOMTEXT_DATA:-$(cd .. && pwd)/shared/data}"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
OUT="${OUT:-runs/constituent_gpu}"
ARMS="${ARMS:-W S}"
SEEDS="${SEEDS:-0 1 2 3}"
MIN="${MIN:-6.5}"
BATCH="${BATCH:-256}"
PRECISION="${PRECISION:-bf16}"
HALVES="${HALVES:-dev}"
STAGES="${STAGES:-1 2 3}"
TREE_READOUT="${TREE_READOUT:-links}"
RIGHT_SKEW="${RIGHT_SKEW:-}"
SETTLE="${SETTLE:-arithmetic open}"
[ "$SETTLE" != none ] || SETTLE=""
STEPS="${STEPS:-}"
OVERRIDES="${OVERRIDES:+,$OVERRIDES}"
TRAIN_ARGS="${TRAIN_ARGS:-}"
RESUME="${RESUME:-}"
COOLDOWN="${COOLDOWN:-0}"
case "$COOLDOWN" in *[!0-9]*|"") echo "COOLDOWN: expected a number of steps, got '$COOLDOWN'" >&2; exit 2 ;; esac
if [ "$COOLDOWN" -gt 0 ] && [ "${STEPS:-0}" -lt $((200 + COOLDOWN)) ]; then
  echo "COOLDOWN=$COOLDOWN: needs STEPS (the run's length) of at least the 200 warm-up steps + $COOLDOWN, got '$STEPS'" >&2; exit 2
fi
SCHEDULE="--lr_scheduler_type constant_with_warmup"
[ "$COOLDOWN" -eq 0 ] || SCHEDULE="--lr_scheduler_type warmup_stable_decay --lr_scheduler_kwargs {\"num_decay_steps\":$COOLDOWN,\"decay_type\":\"linear\"}"
case "$RESUME" in 1) ;; ""|0) RESUME="" ;; *) echo "RESUME: expected 1 (continue each run) or 0, got '$RESUME'" >&2; exit 2 ;; esac
for arm in $ARMS; do
  case "$arm" in W|S) ;; *) echo "ARMS: unknown arm '$arm' (W: whole-word masking, S: span masking)" >&2; exit 2 ;; esac
done
for st in $STAGES; do
  case "$st" in 1|2|3) ;; *) echo "STAGES: '$st' is not a stage (1: corpus, 2: training, 3: scores)" >&2; exit 2 ;; esac
done
for half in $HALVES; do
  case "$half" in dev|test) ;; *) echo "HALVES: '$half' is not a WSJ half (dev, test)" >&2; exit 2 ;; esac
done
stage() { case " $STAGES " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
mkdir -p "$OUT"
if stage 1 && [ ! -f "$OUT/corpus.txt" ]; then
  python scripts/export_corpus.py "$OUT"
fi
if stage 2; then
  declare -A pids=()
  for arm in $ARMS; do
    for seed in $SEEDS; do
      [ -z "$RESUME" ] && [ -f "$OUT/$arm$seed/model.safetensors" ] && continue
      [ -n "$RESUME" ] || : > "$OUT/$arm$seed.log"
      python -m glomtext.pretrain --output_dir "$OUT/$arm$seed" --train_file "$OUT/corpus.txt" --tokenizer_name "$OUT/tokenizer" \
        --preset small --config_overrides "consensus_prior=constituent_learned,island_loss_weight=0$OVERRIDES" \
        $([ "$arm" = S ] && echo --span_mask || echo --whole_word_mask) --per_device_train_batch_size "$BATCH" \
        --max_seq_length 64 --learning_rate 1e-3 $SCHEDULE --num_warmup_steps 200 \
        --max_train_steps "${STEPS:-100000}" --max_train_minutes "$MIN" --mixed_precision "$PRECISION" --logging_steps 50 \
        --validation_sentences 2000 --preprocessing_num_workers 2 --report_to none --seed "$seed" \
        $([ -n "$RESUME" ] && echo --resume_from_checkpoint latest || echo --overwrite_output_dir) $TRAIN_ARGS \
        >> "$OUT/$arm$seed.log" 2>&1 &
      pids[$arm$seed]=$!
    done
  done
  failed=0
  for run in "${!pids[@]}"; do  # a failed run is named, with its log, before anything is scored
    wait "${pids[$run]}" || { echo "run $run failed: see $OUT/$run.log" >&2; failed=1; }
  done
  [ "$failed" = 0 ] || exit 1
fi
stage 3 || exit 0
# each read-out scores into its own folders: eval_{half}_[{readout}_][rs{B}_][{mean}_{choice}_]{run}, scored again
# when older than the model (a resumed run)
read -r LINK_MEAN LINK_CHOICE <<< "$SETTLE" || true
[ -z "$SETTLE" ] || [ -n "$LINK_CHOICE" ] || { echo "SETTLE: expected 'MEAN CHOICE', e.g. 'arithmetic open', got '$SETTLE'" >&2; exit 2; }
TAG="$([ "$TREE_READOUT" = links ] || echo "${TREE_READOUT}_")${RIGHT_SKEW:+rs${RIGHT_SKEW}_}${SETTLE:+${LINK_MEAN}_${LINK_CHOICE}_}"
EVAL_ARGS=(--backbone none --no-progress --tree-readout "$TREE_READOUT" ${RIGHT_SKEW:+--right-skew "$RIGHT_SKEW"}
           ${SETTLE:+--link-mean "$LINK_MEAN" --link-choice "$LINK_CHOICE"})
for arm in $ARMS; do
  for seed in $SEEDS; do
    run="$arm$seed"
    case " $HALVES " in *" dev "*)  # the units (UD EWT dev) are scored with the dev half
      [ "$OUT/eval_dev_$TAG$run/results.json" -nt "$OUT/$run/model.safetensors" ] || glomtext eval --treebank 'nltk:treebank/wsj_00??.mrg' --model "$OUT/$run" \
        "${EVAL_ARGS[@]}" --units ud_prt="$GLOMTEXT_DATA/ud_ewt/en_ewt-ud-dev.conllu" --output "$OUT/eval_dev_$TAG$run" > /dev/null ;; esac
    case " $HALVES " in *" test "*)
      [ "$OUT/eval_test_$TAG$run/results.json" -nt "$OUT/$run/model.safetensors" ] || glomtext eval --treebank 'nltk:treebank/wsj_01??.mrg' --model "$OUT/$run" \
        "${EVAL_ARGS[@]}" --output "$OUT/eval_test_$TAG$run" > /dev/null ;; esac
  done
  python eval/seed_summary.py --out "$OUT" --halves $HALVES --runs $(for seed in $SEEDS; do echo "$TAG$arm$seed"; done)
done
