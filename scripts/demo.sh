#!/usr/bin/env bash
# The default demo: pre-train a tiny English BERT from scratch on the bundled sample (King James
# Bible excerpt, public domain) for a few minutes on CPU, then fill some masks.
set -euo pipefail
BIN=${1:-.venv/bin}
OUT=${2:-runs/demo}
MINUTES=${DEMO_MINUTES:-4}
"$BIN/mlmkit" train --preset scratch-tiny --max-minutes "$MINUTES" --output "$OUT" \
  --set train.eval_every=250 --set train.save_every=1000
echo
echo "== fill-mask with $OUT/model"
"$BIN/mlmkit" predict "$OUT" -k 3 \
  "in the beginning god created the heaven and the [MASK]." \
  "and god said, let there be [MASK]: and there was light." \
  "and the lord spake unto [MASK], saying," \
  "and he went out from the [MASK] of the lord."
