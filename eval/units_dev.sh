#!/usr/bin/env bash
# Discontinuous units of every KIND in the development data (shared/data, or $GLOMTEXT_DATA).
# Without MODEL_DIR only the units are counted; with it, the model's islands are scored too
# (and the backbone named in its config; BACKBONE=NAME overrides it, BACKBONE=none skips it).
# Usage: eval/units_dev.sh [OUTPUT_DIR] [MODEL_DIR]
set -euo pipefail
DATA="${GLOMTEXT_DATA:-$(python -c 'from glomtext.paths import data_dir; print(data_dir())')}"
args=(--units "ud_prt=$DATA/ud_ewt/en_ewt-ud-dev.conllu"
      --units "parseme=$DATA/parseme_en/train.cupt"
      --units "streusle=$DATA/streusle/streusle.ud_dev.conllulex"
      --units "ptb_traces=nltk:treebank"
      --units "export=$DATA/disco/alpinosample.export"
      --output "${1:-runs/eval/units_dev}")
if [ -n "${2:-}" ]; then args+=(--model "$2"); fi
if [ -n "${BACKBONE:-}" ]; then args+=(--backbone "$BACKBONE"); fi
glomtext eval "${args[@]}"
