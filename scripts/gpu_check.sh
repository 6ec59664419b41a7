#!/usr/bin/env bash
# The CUDA path on a machine with a GPU, in one go (about 8 minutes on an H200): the gpu tests,
# then training, search and time-to-BLEU on the GPU. Needs a prepared data/multi30k-de-en and
# SEQ2SEQ_DATA with multi30k/test_2016_flickr.{de,en}.gz. Writes its log to ${OUT:-.}/gpu_check.log.
# TRAIN: overrides of the train benchmark's second run; TTB: of time-to-bleu (MINUTES long).
set -uo pipefail
log="${OUT:-.}/gpu_check.log"
export PYTHONUNBUFFERED=1
{
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
    python3 -c "import torch; print('torch', torch.__version__, 'cuDNN', torch.backends.cudnn.version())"
    echo "== tests (-m gpu)"
    timeout 300 python3 -m pytest -q -m gpu -rA tests/test_cuda.py tests/test_train.py -k "cuda or fp16" 2>&1 | tail -40
    echo "== benchmark train: the preset, then with ${TRAIN:=train.batch_tokens=16000}"
    for overrides in "" "$TRAIN"; do
        # shellcheck disable=SC2086  # one override a word
        timeout 150 python3 scripts/benchmark.py train --runs 2 --steps 100 \
            --set train.device=cuda $overrides
    done
    echo "== benchmark translate"
    timeout 150 python3 scripts/benchmark.py translate --device cuda --runs 3
    echo "== benchmark time-to-bleu (${MINUTES:=2} minutes, ${TTB:=train.precision=fp32})"
    # shellcheck disable=SC2086
    timeout 400 python3 scripts/benchmark.py time-to-bleu --minutes "$MINUTES" \
        --set train.device=cuda $TTB
} 2>&1 | tee "$log"
