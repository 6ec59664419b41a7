#!/usr/bin/env bash
# Multi30k German->English end to end: prepare -> train -> evaluate on test_2016_flickr.
#
#   scripts/train_multi30k.sh [PRESET] [CORPUS] [-- extra train options]
#
# PRESET: multi30k-de-en-attention (default), multi30k-de-en-context, multi30k-de-en-grconv
# CORPUS: a local folder of {split}.{de,en}[.gz] (default: $SEQ2SEQ_DATA/multi30k)
#         or the datasets hub name bentrevett/multi30k (needs the network).
set -euo pipefail
preset="${1:-multi30k-de-en-attention}"
corpus="${2:-${SEQ2SEQ_DATA:-../shared/data}/multi30k}"
shift $(( $# > 2 ? 2 : $# ))
[ "${1:-}" = "--" ] && shift
run="runs/$preset"

if [ ! -f data/multi30k-de-en/stats.json ]; then
    seq2seq prepare "$corpus" --src de --tgt en --out data/multi30k-de-en --vocab-size 8000
fi
if [ -d "$run/checkpoints" ]; then
    seq2seq train --resume "$run" "$@"
else
    seq2seq train "$preset" --run-dir "$run" "$@"
fi
for beam in 1 5; do
    echo "== $preset, beam $beam, test_2016_flickr"
    seq2seq evaluate -m "$run/model.pt" --beam "$beam" \
        --src data/multi30k-de-en/test.de --ref data/multi30k-de-en/test.en
done
