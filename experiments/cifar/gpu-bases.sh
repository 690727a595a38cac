#!/usr/bin/env bash
# On a lent GPU machine: the CIFAR-10 base models that CPU sessions cannot train, each by
# `autocompress train` with train.device=cuda (the project's own recipe and cache format),
# three processes sharing the one GPU: ResNet-20 (seeds 0 and 1, 40 epochs) and ResNet-56
# (seed 0, 30 epochs). Results go to $OUT/bases.tgz (runs/*/base-*.{pt,json} and the logs).
# Measured on an H200 (2026-11-30): ResNet-20 ~7 s an epoch, ResNet-56 ~9 s, alone or three
# at once: the loop is bound by the CPU (batches and augmentation), not the GPU. ResNet-56
# needs LIMIT above 330 s; it was stopped at epoch 29 of 30 twice, so no ResNet-56 base exists.
# Needs: the CIFAR-10 JPEG pack and its decoder under .devdata/, the wheels of the packages the
# machine lacks under .whl/ (see experiments/RESULTS.md, "CIFAR-10 bases").
set -u
OUT=${OUT:-out}; mkdir -p "$OUT" logs
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee logs/gpu.txt
python3 -c "import torch, autocompress; print('torch', torch.__version__, torch.cuda.get_device_name())" || exit 1
python3 .devdata/cifar10_jpeg_to_batches.py .devdata/cifar10-jpeg data/cifar-10-batches-py || exit 1
train() {  # tag config extra-args...
  local tag=$1 config=$2; shift 2
  timeout "${LIMIT:-600}" python3 -m autocompress train "experiments/$config.yaml" \
    --set model.checkpoint=null --set train.device=cuda --set train.threads=4 "$@" > "logs/$tag.log" 2>&1
  echo "$tag: exit $?" | tee -a logs/status.txt
}
start=$(date +%s)
train resnet20-s0 resnet20-cifar10 &
train resnet20-s1 resnet20-cifar10 --set train.seed=1 &
train resnet56-s0 resnet56-cifar10 &
wait
echo "wall $(( $(date +%s) - start )) s" | tee -a logs/status.txt
for f in logs/resnet*.log; do echo "== $f"; tail -n 4 "$f"; done
tar czf "$OUT/bases.tgz" logs runs/*/base-* 2>/dev/null
ls -la "$OUT"
