#!/usr/bin/env bash
# The default demo: a character-level (CANINE-C style) masked LM of internet domain names,
# trained from scratch for a few minutes on CPU on the bundled sample (50k real names from the
# MIT-licensed isdisposable and mailchecker lists), then asked to fill masked parts of names.
# DEMO=token runs the token-level demo instead (tiny English BERT on a King James Bible excerpt).
set -euo pipefail
BIN=${1:-.venv/bin}
OUT=${2:-runs/demo}
MINUTES=${DEMO_MINUTES:-4}
if [ "${DEMO:-char}" = "token" ]; then
  "$BIN/mlmkit" train --preset scratch-tiny --max-minutes "$MINUTES" --output "$OUT" --overwrite \
    --set train.eval_every=250 --set train.save_every=1000 --set train.threads=1
  echo
  echo "== fill-mask with $OUT/model"
  "$BIN/mlmkit" predict "$OUT" -k 3 \
    "in the beginning god created the heaven and the [MASK]." \
    "and god said, let there be [MASK]: and there was light." \
    "and the lord spake unto [MASK], saying,"
  exit 0
fi
"$BIN/mlmkit" train --preset domains-tiny --max-minutes "$MINUTES" --output "$OUT" --overwrite \
  --set train.save_every=2000
echo
echo "== held-out evaluation"
"$BIN/mlmkit" eval "$OUT" --data mlmkit:samples/domains.txt
echo
echo "== fills ([n] = n unknown characters, [?] = any length; scores are log-probabilities)"
"$BIN/mlmkit" predict "$OUT" -k 3 "temp[4].com" "10minute[4].com" "[?]mail.com" "mail[3].net" "goo[3].com"
