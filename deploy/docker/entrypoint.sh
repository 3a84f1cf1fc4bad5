#!/usr/bin/env bash
# Entry point of the iMOS Serve images: `imos` with the container's arguments (default: serve).
#
#   docker run IMAGE serve | gateway | worker | export NAME --backend tensorrt | models | ...
#   docker run IMAGE bash                     # anything that is not an imos command runs as given
#                                             # (after step 2, so tools see the engine cache too)
#
# Before starting a role that runs the model it prepares, in this order (each step is optional):
#
# 1. GPU claim (GPU_CLAIM_DIR set, CUDA_VISIBLE_DEVICES unset): for `docker compose up --scale worker=N`,
#    where every replica sees every GPU of the host (Compose has no per-replica device assignment). The
#    worker takes an exclusive flock on GPU_CLAIM_DIR/<gpu-uuid>.<slot>.lock, a volume shared by the
#    replicas, and sets CUDA_VISIBLE_DEVICES to that GPU. The lock is held by the server process itself
#    (inherited descriptor 9) and released by the kernel when it exits, so a restarted or replaced
#    replica claims a free GPU again. GPU_SLOTS_PER_DEVICE (default 1) workers may share one GPU.
# 2. Engine cache (ENGINE_CACHE_DIR set): the model repository at IMOS_MODEL_REPO may be read-only (an
#    image folder, a read-only volume). A view of it is linked under ${TMPDIR:-/tmp}/imos-model-repo.* in
#    which every <name>/<version>/build folder is ENGINE_CACHE_DIR/<name>/<version>, and IMOS_MODEL_REPO
#    is pointed at the view. The TensorRT backend keeps its plans in build/tensorrt/sm<cc>-trt<version>/,
#    so one cache volume serves every GPU type and TensorRT release without mixing them up.
# 3. Warm-up (IMOS_BACKEND onnx or tensorrt, ENGINE_WARMUP not 0): `imos export IMOS_MODEL --backend
#    IMOS_BACKEND` (plus `--precision int8` for onnx with IMOS_PRECISION=int8) under an exclusive lock on the cache, so that replicas starting together build the
#    ONNX graphs and TensorRT plans once (the first start on a GPU type takes minutes); later starts find
#    them current and go straight on.
set -euo pipefail
shopt -s nullglob

# The imos subcommands (tests/unit/test_deploy_dockerfile.py keeps this list equal to the CLI's).
CLI_COMMANDS="segment import-checkpoint export models serve gateway worker eval bench train finetune average cvat"
# Roles that load the model and so get a GPU claim and a warm-up.
MODEL_ROLES="serve worker"

log() {  # one line on stderr, JSON like the service's own logs unless IMOS_LOG_JSON is false
  local json=${IMOS_LOG_JSON:-true}
  if [[ ${json,,} =~ ^(false|0|no|off)$ ]]; then
    printf '%s INFO imos.entrypoint %s\n' "$(date -u +%FT%TZ)" "$*" >&2
  else
    printf '{"ts": %s, "level": "INFO", "logger": "imos.entrypoint", "msg": "%s"}\n' "$(date +%s)" "$*" >&2
  fi
}

die() {
  log "error: $*"
  exit 1
}

contains() {  # contains "word list" word
  case " $1 " in *" $2 "*) return 0 ;; *) return 1 ;; esac
}

list_gpus() {  # one id per line: UUIDs from nvidia-smi, else indices from torch
  if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi --query-gpu=uuid --format=csv,noheader
  else
    python -c 'import torch; print("\n".join(str(i) for i in range(torch.cuda.device_count())))'
  fi
}

claim_gpu() {
  local dir=$1 slots=${GPU_SLOTS_PER_DEVICE:-1} id slot
  local -a ids
  mapfile -t ids < <(list_gpus | tr -d ' ')
  [ "${#ids[@]}" -gt 0 ] || die "GPU_CLAIM_DIR is set but no GPU is visible (NVIDIA container toolkit? device reservation?)"
  mkdir -p "$dir"
  for ((slot = 0; slot < slots; slot++)); do
    for id in "${ids[@]}"; do
      exec 9>"$dir/$id.$slot.lock"
      if flock --nonblock 9; then
        export CUDA_VISIBLE_DEVICES=$id
        log "claimed GPU $id (slot $slot of $slots)"
        return 0
      fi
      exec 9>&-
    done
  done
  die "all ${#ids[@]} GPU(s) x $slots slot(s) are claimed by other workers: scale workers to at most $((${#ids[@]} * slots))"
}

link_repo_view() {  # link_repo_view SOURCE CACHE VIEW
  local src=$1 cache=$2 view=$3 model name item base entry
  mkdir -p "$view" "$cache"
  for model in "$src"/*/; do
    model=${model%/}
    [ -f "$model/model.yaml" ] || continue
    name=$(basename "$model")
    mkdir -p "$view/$name"
    for item in "$model"/*; do
      base=$(basename "$item")
      if [ -d "$item" ] && [[ $base =~ ^[0-9]+$ ]]; then
        mkdir -p "$view/$name/$base" "$cache/$name/$base"
        for entry in "$item"/*; do
          [ "$(basename "$entry")" = build ] || ln -s "$entry" "$view/$name/$base/"
        done
        ln -s "$cache/$name/$base" "$view/$name/$base/build"
      else
        ln -s "$item" "$view/$name/$base"
      fi
    done
  done
}

main() {
  local role=${1:-serve} imos=1
  [ "$#" -gt 0 ] || set -- serve
  if ! contains "$CLI_COMMANDS" "$role" && [ "${role#-}" = "$role" ]; then
    imos=0  # not an imos command (bash, python tool.py, ...): run it as given, with the repository view
  fi
  if [ "$imos" = 1 ] && contains "$MODEL_ROLES" "$role" && [ -n "${GPU_CLAIM_DIR:-}" ] \
      && [ -z "${CUDA_VISIBLE_DEVICES:-}" ]; then
    claim_gpu "$GPU_CLAIM_DIR"
  fi
  if [ -n "${ENGINE_CACHE_DIR:-}" ] && [ "$role" != import-checkpoint ]; then
    local src=${IMOS_MODEL_REPO:-/opt/imos/model_repo}
    local view
    mkdir -p "${TMPDIR:-/tmp}"
    view=$(mktemp -d "${TMPDIR:-/tmp}/imos-model-repo.XXXXXX")
    link_repo_view "$src" "$ENGINE_CACHE_DIR" "$view"
    export IMOS_MODEL_REPO=$view
  fi
  [ "$imos" = 1 ] || exec "$@"
  local backend=${IMOS_BACKEND:-torch}
  if contains "$MODEL_ROLES" "$role" && [ -n "${ENGINE_CACHE_DIR:-}" ] && [ "${ENGINE_WARMUP:-1}" != 0 ] \
      && { [ "$backend" = tensorrt ] || [ "$backend" = onnx ]; }; then
    local model=${IMOS_MODEL:-imos-lite}
    log "preparing $backend engines of $model in $ENGINE_CACHE_DIR (the first start on a GPU type takes minutes)"
    local extra=()
    # int8 graphs are calibrated once per cache too (about half a minute for imos-lite).
    # auto: int8 where the CPU has VNNI / AMX-INT8, as the worker will choose (imos export resolves it alike).
    if [ "$backend" = onnx ] && contains "int8 auto" "${IMOS_PRECISION:-fp32}"; then extra=(--precision "$IMOS_PRECISION"); fi
    flock "$ENGINE_CACHE_DIR/.build.lock" imos export "$model" --backend "$backend" "${extra[@]}" >&2
  fi
  exec imos "$@"
}

main "$@"
