#!/usr/bin/env bash
# The test command: install, then run the whole suite (CPU, ~N minutes on 2 cores).
# Data is read from $GLOMTEXT_DATA (default: ../shared/data beside the checkout).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
export GLOMTEXT_DATA="${GLOMTEXT_DATA:-$(cd .. && pwd)/shared/data}"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
python -m pytest tests "$@"
