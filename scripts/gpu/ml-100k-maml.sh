#!/usr/bin/env bash
# ml-100k, 100 epochs, evaluated every 10 (docs/results.md): EEMU with batched second-order MAML
# (configs/ml-100k.toml with algorithm = "maml", inner_loop = "batched", inner learning rate
# 0.01) and per-user adaptation on 8 CPU cores; RETRAIN and Mean on the GPU. About 280 s on the
# H200 machine. Needs gpu-run/ (scripts/gpu/stage.sh).
source "$(dirname "$0")/common.sh"
sed -e 's/^algorithm = "fomaml"/algorithm = "maml"\ninner_loop = "batched"/' \
  -e 's/^inner_steps = 1/inner_steps = 1\ninner_learning_rate = 0.01/' configs/ml-100k.toml > $W/ml-100k-maml.toml
$B/eemu ingest --config $W/ml-100k-maml.toml --format ml-100k --input $W/ml-100k --store $W/m100 -q
ev m100-maml $W/m100 cpu eemu,eemu-adapt --jobs 8 & PE=$!
ev m100-base $W/m100 cuda retrain,mean & PB=$!
wait_for m100-base:$PB m100-maml:$PE
finish
