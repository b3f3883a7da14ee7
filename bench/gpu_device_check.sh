#!/usr/bin/env bash
# The one prepared GPU check (about 8 minutes on an H100/H200 with onnxruntime-gpu staged from ../shared/gpu/).
# NOT YET RUN ON A GPU: only its --dry-run has run (tests/runtime/cli/test_gpu_device_check.py, in the default suite).
#
#   bench/gpu_device_check.sh [--dry-run]
#
# Steps (each printed before it runs; with --dry-run the GPU steps are printed only, the CPU steps run):
#   install   onnxruntime-gpu from the staged parts (.carry/part*.d, ../shared/gpu/README.md) and longvec itself
#   preload   onnxruntime.preload_dlls() and the providers it then lists
#   bundle    BUNDLE, or a random-weight model of MODEL_CONFIG's shape exported to one (the machine has no weights)
#   docs      50 documents of 3 windows each, as JSONL, for the serve and Ray steps
#   load      Embedder.load on "cuda", fp32 and optimized, parity and tokens/s against the CPU (gpu_check)
#   serve     `longvec serve BUNDLE --device cuda`: /ready, one /v1/documents request, /health and /info into $OUT
#   ray       `longvec embed BUNDLE docs OUT --engine ray --device cuda` on the 50 documents
#   trt       where TensorRT imports: `longvec build-engine BUNDLE --windows W --max-batch 16` (its variant is
#             then one of the check step's paths)
#   check     bench/gpu_check.py over every path the machine has: one JSON (versions, provider, parity,
#             tokens/s per path) into $OUT/gpu_check.json
#
# A step that cannot run on the machine (a module not importable: the GPU machines here have no fastapi, Ray or
# TensorRT and reach no index; stage wheels under .carry/wheels/) is SKIPPED and named, not failed.
# Environment: OUT (default ./gpu_out), PY (default python3), LONGVEC (default: `$PY -m longvec.runtime.cli`),
# BUNDLE (default: made by the bundle step under $WORK), MODEL_CONFIG (default .carry/minilm-config: a model
# directory without its weights), WORK (default a temporary directory), PORT (default 8765).
set -euo pipefail

DRY=0
if [[ "${1:-}" == "--dry-run" ]]; then DRY=1; fi
OUT=${OUT:-./gpu_out}
PY=${PY:-python3}
LONGVEC=${LONGVEC:-"$PY -m longvec.runtime.cli"}
WORK=${WORK:-$(mktemp -d)}
MODEL_CONFIG=${MODEL_CONFIG:-.carry/minilm-config}
PORT=${PORT:-8765}
HERE=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$OUT"
LOG="$OUT/gpu_device_check.log"
: >"$LOG"

# step NAME KIND COMMAND...: print it; run it unless this is a dry run and KIND is gpu
step() {
    local name=$1 kind=$2
    shift 2
    echo "== $name [$kind] $*" | tee -a "$LOG"
    if [[ $DRY == 1 && $kind == gpu ]]; then
        echo "   dry run: not run" | tee -a "$LOG"
        return 0
    fi
    local started=$SECONDS rc
    set +e
    (set -e; "$@") >>"$LOG" 2>&1 # a subshell outside any condition: its first failing command ends the step
    rc=$?
    set -e
    if [[ $rc == 0 ]]; then
        echo "   ok ($((SECONDS - started)) s)" | tee -a "$LOG"
    elif [[ $rc == 3 ]]; then # the step cannot run on this machine: said in the log, not a failure of longvec
        echo "   SKIPPED ($(tail -n 1 "$LOG"))" | tee -a "$LOG"
        SKIPPED+=("$name")
    else
        echo "   FAILED ($((SECONDS - started)) s, see $LOG)" | tee -a "$LOG"
        FAILED+=("$name")
    fi
}
FAILED=()
SKIPPED=()

# needs PYTHON_MODULE...: exit 3 (skipped) naming the first module this Python cannot import
needs() {
    local m
    for m in "$@"; do
        if ! "$PY" -c "import $m" 2>/dev/null; then
            echo "$m is not importable here (stage its wheels under .carry/wheels/)"
            exit 3
        fi
    done
}

install() {
    mkdir -p /opt/stage && cp .carry/part*.d/part* /opt/stage/
    local wheel
    wheel=$(awk '{print $2}' .carry/wheel.sha256)
    (cd /opt/stage && cat part0* >"$wheel" && sha256sum -c "$HERE/.carry/wheel.sha256")
    "$PY" -m pip install -q --no-index --no-deps --no-compile --target /opt/ortgpu "/opt/stage/$wheel"
    "$PY" -m pip install -q --no-deps --no-build-isolation --no-index --target /opt/lv "$HERE"
    if [[ -d .carry/wheels ]]; then # e.g. fastapi, uvicorn, prometheus_client, ray: the machine reaches no index
        "$PY" -m pip install -q --no-index --find-links .carry/wheels --target /opt/lv .carry/wheels/*.whl
    fi
}

preload() {
    "$PY" -c "import onnxruntime as o; o.preload_dlls(); print(o.__version__, o.get_available_providers())"
}

make_bundle() {
    if [[ -n "${BUNDLE:-}" ]]; then
        echo "using BUNDLE=$BUNDLE"
        return 0
    fi
    "$PY" "$HERE/bench/gpu_check.py" --random-model "$MODEL_CONFIG" --model-out "$WORK/model"
    $LONGVEC export "$WORK/model" "$WORK/bundle" --variants optimized --overwrite
}

make_docs() {
    "$PY" - "$(bundle)" "$WORK/docs.jsonl" "$HERE/bench" <<'EOF'
import json, sys
sys.path.insert(0, sys.argv[3])
from gpu_check import documents
from longvec.runtime import Embedder
with Embedder.load(sys.argv[1], variant="fp32", threads=1) as emb:
    docs = documents(50, 3 * emb.plan().content, emb.count_tokens)
with open(sys.argv[2], "w", encoding="utf-8") as f:
    for i, text in enumerate(docs):
        f.write(json.dumps({"id": f"d{i}", "text": text}) + "\n")
print(f"wrote {len(docs)} documents to {sys.argv[2]}")
EOF
}

bundle() { echo "${BUNDLE:-$WORK/bundle}"; }

serve_once() {
    needs fastapi uvicorn prometheus_client
    $LONGVEC serve "$(bundle)" --device cuda --port "$PORT" >"$OUT/serve.log" 2>&1 &
    local pid=$!
    trap 'kill $pid 2>/dev/null || true' RETURN
    for _ in $(seq 240); do
        if curl -sf "http://127.0.0.1:$PORT/ready" >/dev/null; then break; fi
        if ! kill -0 $pid 2>/dev/null; then echo "the server exited"; return 1; fi
        sleep 0.5
    done
    curl -sf "http://127.0.0.1:$PORT/health" >"$OUT/serve_health.json"
    curl -sf "http://127.0.0.1:$PORT/info" >"$OUT/serve_info.json"
    "$PY" -c "import json,sys; print(json.dumps({'documents': [json.loads(l) for l in sys.stdin][:4]}))" \
        <"$WORK/docs.jsonl" |
        curl -sf -H 'content-type: application/json' -d @- "http://127.0.0.1:$PORT/v1/documents" >"$OUT/serve_documents.json"
    "$PY" -c "import json,sys; [print(f, json.load(open(f))['provider']) for f in sys.argv[1:]]" \
        "$OUT/serve_health.json" "$OUT/serve_info.json"
}

ray_job() {
    needs ray pyarrow
    rm -rf "$WORK/ray_out"
    $LONGVEC embed "$(bundle)" "$WORK/docs.jsonl" "$WORK/ray_out" --engine ray --device cuda --ray-actors 1
    cp "$WORK/ray_out/_progress.json" "$OUT/ray_progress.json"
}

tensorrt_step() {
    needs tensorrt cuda.bindings
    local window
    window=$("$PY" -c "import sys; from longvec.runtime import Embedder; e = Embedder.load(sys.argv[1], variant='fp32'); print(e.window)" "$(bundle)")
    $LONGVEC build-engine "$(bundle)" --windows "$window" --max-batch 16 --cache-dir "$WORK/trt-cache"
}

gpu_check() {
    "$PY" "$HERE/bench/gpu_check.py" --bundle "$(bundle)" --out "$OUT/gpu_check.json" "$@"
}

step install gpu install
if [[ $DRY == 0 ]]; then export PYTHONPATH=/opt/ortgpu:/opt/lv${PYTHONPATH:+:$PYTHONPATH}; fi
step preload gpu preload
step bundle cpu make_bundle
step docs cpu make_docs
step load gpu gpu_check --paths cuda:fp32,cuda:optimized --docs 50 --repeats 3 --out "$OUT/load_parity.json"
step serve gpu serve_once
step ray gpu ray_job
step trt gpu tensorrt_step
step check gpu gpu_check --docs 50 --repeats 3
if [[ $DRY == 1 ]]; then  # the CPU paths of the same check: the script's plumbing, on whatever machine this is
    step check-cpu cpu gpu_check --paths cpu:optimized --docs 2 --windows-per-doc 1 --repeats 1
fi
echo "steps skipped: ${SKIPPED[*]:-none}" | tee -a "$LOG"
echo "steps failed: ${FAILED[*]:-none}" | tee -a "$LOG"
[[ ${#FAILED[@]} == 0 ]]
