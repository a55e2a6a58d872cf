#!/usr/bin/env bash
# The long-delay study of docs/delay.md, one resumable step at a time: every step skips
# itself when its output exists, so a killed run is restarted with the same command.
#
#   bash scripts/delay_study.sh collect TASK      # 100 expert demos + prefix branches (d up to 16, H = 40)
#   bash scripts/delay_study.sh train TASK [VARIANT]   # flow policy, H = 40, delta expert + training-time RTC
#        VARIANT (prefix-conditioning study, into flow_TASK_VARIANT): noise (context noise shaped like a
#        stale chunk's error), long (6000 steps), wide (dim_model 128), deep (2 delta-expert blocks)
#   bash scripts/delay_study.sh correction TASK [--use_base=false]   # DAgger correction head over latest_only
#                                   (ITERS=3 DAgger iterations; a larger ITERS resumes from the saved ones)
#   bash scripts/delay_study.sh cells TASK TAG STRATEGIES DELAYS [N]  # one sweep dir per (strategy, delay)
#   bash scripts/delay_study.sh report TASK       # docs/delay_<task>.md / .png from every cell on disk
#
# TAG picks the policy: flow (the checkpoint), flow_VARIANT (a variant's checkpoint), corr (the checkpoint + --correction.path),
# corr_nobase (the ablation head), oracle (the scripted prefix-aware oracle).
# OUT (default outputs/delay40) holds everything; CPU: one thread per step, run two at most.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1 MUJOCO_GL=${MUJOCO_GL:-egl}
OUT=${OUT:-outputs/delay40}
CW=${CW:-.venv/bin/chunkwise}
PY=${PY:-.venv/bin/python}
H=40
ITERS=${ITERS:-3}

step=${1:?usage: delay_study.sh collect|train|correction|cells|report TASK ...}
T=${2:?task, e.g. push-v3}
variant=""
[ "$step" = train ] && variant=${3:-}
flowdir=$OUT/flow_$T${variant:+_$variant}
ckpt=$flowdir/checkpoints/last
steps=3000 dim=64 dnb=1 extra=()
case $variant in
  "") ;;
  noise) extra=(--policy.context_noise=chunk_error) ;;
  long) steps=6000 ;;
  wide) dim=128 ;;
  deep) dnb=2 ;;
  *) echo "unknown VARIANT $variant (noise, long, wide, deep)" >&2; exit 2 ;;
esac

case $step in
collect)
  [ -f "$OUT/data/$T/meta/info.json" ] && exit 0
  $CW collect --env.type=metaworld --env.task="$T" --n_episodes=100 \
    --branches.delays='[1,2,3,4,6,8,10,12,14,16]' --branches.chunk_size=$H --branches.length=$H \
    --branches.chunk_size_threshold=1.0 --output_dir="$OUT/data/$T" ;;
train)
  # done only when the last checkpoint reached its steps; a killed run resumes from its last save
  resume=false
  if [ -f "$ckpt/train_state.json" ]; then
    $PY -c "import json,sys; s=json.load(open(sys.argv[1])); sys.exit(0 if s['step'] >= s['train_config']['steps'] else 1)" \
      "$ckpt/train_state.json" && exit 0
    resume=true
  fi
  $CW train --resume=$resume --policy.type=flow --policy.chunk_size=$H --policy.n_action_steps=$H \
    --policy.dim_model=$dim --policy.n_blocks=2 --policy.delta_n_blocks=$dnb "${extra[@]}" \
    --policy.rtc_training=true --policy.rtc_training_prob=0.5 --policy.delta_expert=true --policy.rtc_max_delay=16 \
    --dataset.root="$OUT/data/$T" --steps=$steps --batch_size=64 --num_threads=1 --progress=false \
    --output_dir="$flowdir" ;;
correction)
  use_base=${3:-}
  dir=$OUT/corr_$T; [ "$use_base" = "--use_base=false" ] && dir=$OUT/corr_nobase_$T
  [ -f "$dir/model.safetensors" ] && [ -f "$dir/train_log.json" ] && \
    [ "$($PY -c "import json,sys; print(len(json.load(open(sys.argv[1]))))" "$dir/train_log.json")" = "$ITERS" ] && exit 0
  $PY -m chunkwise.eval.correction_train --env.task="$T" --policy.type=checkpoint --policy.path="$ckpt" \
    --strategy=latest_only --delays=4,8,12,16 --n_episodes=40 --dagger_iters=$ITERS --chunk_size_threshold=1.0 \
    --actions_per_chunk=$H --steps=8000 --hidden=256,256 $use_base --output_dir="$dir" ;;
cells)
  tag=${3:?TAG}; strategies=${4:?STRATEGIES}; delays=${5:?DELAYS}; n=${6:-50}
  case $tag in
    flow) pol=(--policy.type=checkpoint --policy.path="$ckpt") ;;
    flow_*) pol=(--policy.type=checkpoint --policy.path="$OUT/${tag/flow/flow_$T}/checkpoints/last") ;;
    corr) pol=(--policy.type=checkpoint --policy.path="$ckpt" --correction.path="$OUT/corr_$T") ;;
    corr_nobase) pol=(--policy.type=checkpoint --policy.path="$ckpt" --correction.path="$OUT/corr_nobase_$T") ;;
    oracle) pol=(--policy.type=scripted --policy.chunk_size=$H) ;;
    *) echo "unknown TAG $tag (flow, flow_VARIANT, corr, corr_nobase, oracle)" >&2; exit 2 ;;
  esac
  for d in ${delays//,/ }; do for s in ${strategies//,/ }; do
    cell=$OUT/cells/$T/$tag/${s}_d$d
    [ -f "$cell/results.json" ] && continue
    mkdir -p "$(dirname "$cell")"
    echo "=== $T $tag $s d=$d $(date +%T)"
    $CW sweep --env.type=metaworld --tasks="$T" --delays="$d" --strategies="$s" --n_episodes="$n" --seed=1000 \
      "${pol[@]}" --actions_per_chunk=$H --chunk_size_threshold=1.0 --n_action_steps=10 --n_workers=1 \
      --plot=false --progress=false --overwrite=true --output_dir="$cell" > /dev/null
  done; done ;;
report)
  dirs=()
  for tag in flow corr corr_nobase oracle; do
    [ -d "$OUT/cells/$T/$tag" ] || continue
    case $tag in corr_nobase) dirs+=("$OUT/cells/$T/$tag:_nobase") ;; *) dirs+=("$OUT/cells/$T/$tag") ;; esac
  done
  for dir in "$OUT/cells/$T"/flow_*; do [ -d "$dir" ] && dirs+=("$dir:_${dir##*/flow_}"); done
  MPLBACKEND=Agg $PY -m chunkwise.eval.correction_report --out="docs/delay_$T" "${dirs[@]}" ;;
*) echo "unknown step $step" >&2; exit 2 ;;
esac
