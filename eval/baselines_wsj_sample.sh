#!/usr/bin/env bash
# Baselines on NLTK's WSJ sample (3,914 trees): fixed and random trees, and the distance trees of
# each layer of the all-MiniLM-L6-v2 backbone. Usage: eval/baselines_wsj_sample.sh [OUTPUT_DIR]
set -euo pipefail
glomtext eval --treebank nltk:treebank --backbone all-MiniLM-L6-v2 --output "${1:-runs/eval/wsj_sample_baselines}"
