#!/usr/bin/env bash
# The next GPU stage of the bundled default model, as one prepared run for a machine with a GPU
# that cannot read ../shared or reach a package index (docs/model-card.md, "The next GPU stage").
#
#   bash scripts/gpu_default_model.sh prepare
#       here, with ../shared beside the checkout and access to PyPI: packs color/train into
#       runs/device/pack (one JPEG crop of at most 192 px a side per image, about 28 MB) and
#       downloads the wheels the GPU machine's Python 3.12 lacks (pydantic) into runs/device/wheels.
#   bash scripts/gpu_default_model.sh train [STEPS_PER_LEG] [LEGS]
#       on the GPU machine, from the checkout's root, with runs/device carried: installs the wheels
#       into /tmp/aerocolor-deps where pydantic is missing, then trains configs/default_model_gpu_v7.yaml
#       in LEGS legs of STEPS_PER_LEG steps (default 4 x 2000 = its 8,000), each resuming exactly from
#       the last, and writes a slim float16 copy after each leg to $OUT (or runs/device/out):
#       step2000.pt ... step8000.pt, about 6 MB each, plus train.log.
#
# Then, here: score the copies on the selection half, average the best with the bundled model
# (scripts/average_weights.py) and score that; the model card's rule picks what ships.
#
# Environment: PYTHON (default python3), EXTRA (more `--set` overrides for the train command, e.g.
# "--set train.device=cpu --set data.num_workers=0" for a dry run on a CPU).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
DEV=runs/device
case "${1:-}" in
prepare)
  "$PYTHON" scripts/pack_training_subset.py ../shared/data/color/train --out "$DEV/pack" \
      --max-side 192 --crop 192 --quality 72 --reencode
  "$PYTHON" -m pip download --quiet --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
      --dest "$DEV/wheels" pydantic
  du -sh "$DEV"/*
  ;;
train)
  per_leg=${2:-2000}
  legs=${3:-4}
  out=${OUT:-$DEV/out}
  mkdir -p "$out"
  if ! "$PYTHON" -c "import pydantic" 2>/dev/null; then
    "$PYTHON" -m pip install --quiet --no-index --find-links "$DEV/wheels" --target /tmp/aerocolor-deps pydantic
    export PYTHONPATH="/tmp/aerocolor-deps${PYTHONPATH:+:$PYTHONPATH}"
  fi
  export PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
  run=runs/default_model_gpu_v7
  for leg in $(seq 1 "$legs"); do
    step=$((leg * per_leg))
    # shellcheck disable=SC2086
    "$PYTHON" -m aerocolor train -c configs/default_model_gpu_v7.yaml --steps $((legs * per_leg)) \
        --until-step "$step" -q ${EXTRA:-} 2>&1 | tee -a "$out/train.log"
    "$PYTHON" -m aerocolor export "$run/last.pt" --slim "$out/step$step.pt" --half 2>&1 | tee -a "$out/train.log"
  done
  ;;
*)
  sed -n '2,24p' "$0"
  exit 2
  ;;
esac
