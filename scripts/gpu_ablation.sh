#!/usr/bin/env bash
# The GPU ablation reported in the README: three 2.5-minute pretraining runs side by side on one GPU
# (base preset, whole-word masking, bf16), differing only in the island regulariser and the top-down
# position code; then each is scored on the development half of the WSJ sample.
#   A: island_loss_weight 0.1 (default)   B: island_loss_weight 0   C: top_down_position=island
#   D: consensus_prior=constituent, island_loss_weight 0 (not yet run on a GPU; RUNS="A B C D" adds it,
#      which also shares the GPU four ways instead of three)
# Step 1 writes the training text (~9M words of NLTK corpora, WSJ-sample sentences excluded) and an
# 8k WordPiece tokenizer once, so the three runs share them. OUT=... sets the folder (default runs/gpu).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-runs/gpu}"
MINUTES="${MINUTES:-2.5}"
RUNS="${RUNS:-A B C}"
mkdir -p "$OUT"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
[ -f "$OUT/corpus.txt" ] || python scripts/export_corpus.py "$OUT"
COMMON=(--train_file "$OUT/corpus.txt" --tokenizer_name "$OUT/tokenizer" --preset base --per_device_train_batch_size 128
        --max_seq_length 64 --whole_word_mask --learning_rate 1e-3 --lr_scheduler_type constant_with_warmup
        --num_warmup_steps 200 --max_train_steps 100000 --max_train_minutes "$MINUTES" --mixed_precision bf16
        --logging_steps 50 --validation_sentences 2000 --preprocessing_num_workers 5 --report_to none --seed 0)
declare -A OVERRIDES=([A]="island_loss_weight=0.1" [B]="island_loss_weight=0" [C]="top_down_position=island"
                      [D]="consensus_prior=constituent,island_loss_weight=0")
for v in $RUNS; do
  [ -n "${OVERRIDES[$v]:-}" ] || { echo "RUNS: unknown run '$v' (choose from ${!OVERRIDES[*]})" >&2; exit 2; }
done
for v in $RUNS; do
  python -m glomtext.pretrain --output_dir "$OUT/$v" "${COMMON[@]}" --config_overrides "${OVERRIDES[$v]}" > "$OUT/$v.log" 2>&1 &
done
wait
for v in $RUNS; do
  glomtext eval --treebank 'nltk:treebank/wsj_00??.mrg' --model "$OUT/$v" --backbone none \
    --units ud_prt="${GLOMTEXT_DATA:-../shared/data}/ud_ewt/en_ewt-ud-dev.conllu" --output "$OUT/eval_dev_$v"
done
