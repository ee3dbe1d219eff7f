#!/usr/bin/env bash
# The main job on a built-in default, on 2 CPU cores: install, pretrain a small GLOM on the Brown
# corpus (evaluation sentences excluded), show the islands of a sentence, and score the model on the
# development half of the WSJ sample next to the baselines. Output: runs/quickstart/.
# STEPS=... changes the training length; OUT=... the folder.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
export GLOMTEXT_DATA="${GLOMTEXT_DATA:-$(cd .. && pwd)/shared/data}"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
OUT="${OUT:-runs/quickstart}"
STEPS="${STEPS:-600}"
if [ -f "$OUT/model.safetensors" ]; then
  echo "$OUT already holds a trained model; skipping pretraining (remove it to train again)"
else
  # an interrupted quickstart continues from its last checkpoint; one with none starts over
  if [ -d "$OUT/checkpoints" ]; then RESUME=(--resume_from_checkpoint latest); else RESUME=(--overwrite_output_dir); fi
  python -m glomtext.pretrain --output_dir "$OUT" --corpus nltk:brown --exclude_treebank nltk:treebank \
    --preset small --max_train_steps "$STEPS" --per_device_train_batch_size 32 --max_seq_length 64 \
    --checkpointing_steps 200 --seed 0 "${RESUME[@]}"
fi
glomtext islands --model "$OUT" "He shut the noisy kids up ." "The new chairman took the board into account ."
glomtext eval --treebank 'nltk:treebank/wsj_00??.mrg' --model "$OUT" --max-sentences 500 --backbone none \
  --units ud_prt="$GLOMTEXT_DATA/ud_ewt/en_ewt-ud-dev.conllu" --output "$OUT/eval_dev"
