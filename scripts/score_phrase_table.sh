#!/usr/bin/env bash
# The Cho et al. 2014a experiment in small: train French->English on Tatoeba,
# score every pair of the Notre-Dame Moses phrase table with it, and write a
# moses.ini that uses the new feature.
#
#   scripts/score_phrase_table.sh [-- extra train options]
set -euo pipefail
data="${SEQ2SEQ_DATA:-../shared/data}"
table="$data/phrase-tables/notre-dame-fr-en"
run=runs/tatoeba-fr-en-attention
out=runs/notre-dame-scored
[ "${1:-}" = "--" ] && shift

if [ ! -f data/tatoeba-fr-en/stats.json ]; then
    seq2seq prepare "$data/tatoeba-fr-en" --src fr --tgt en --out data/tatoeba-fr-en \
        --vocab-size 4000
fi
if [ ! -f "$run/model.pt" ]; then
    seq2seq train tatoeba-fr-en-attention --run-dir "$run" "$@"
fi
mkdir -p "$out"  # this script's own folder: --force replaces its last outputs
# p(e|f), the paper's feature; add --pmi for p(e|f) / p(e|empty source), which separates
# true pairs from random ones far better on this table (README, "Phrase-pair scoring signal")
seq2seq score-phrases -m "$run/model.pt" "$table/phrase-table.gz" --force \
    -o "$out/phrase-table.gz" --moses-ini "$table/moses.ini" "$out/moses.ini"
python scripts/benchmark.py phrases --model "$run/model.pt" --table "$table/phrase-table.gz"
