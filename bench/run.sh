#!/usr/bin/env bash
# make bench: cnn bench and bench/pytorch_models.py side by side on one device, the
# time-to-accuracy run (bench/tta.py, GPU), then one markdown table (bench/table.py).
# On a CPU the two sides are interleaved: BENCH_ROUNDS rounds, each running, row by row,
# cnn and then PyTorch; the table shows the medians over the rounds (issue 11's rows).
# Every result is a JSON file in $BENCH_OUT; the table is also written to
# $BENCH_OUT/table.md. bench/README.md describes it.
#
#   BENCH_QUICK=1     few steps: about 4 minutes on an H200 (5 at most); on a CPU 1 round
#                     of 3 steps, no torch.compile (about 6 minutes on 2 busy cores; the full run
#                     of 3 rounds about 13)
#   BENCH_DEVICE=D    cuda | cpu (default: cuda when `cnn devices` finds a GPU)
#   BENCH_OUT=DIR     where the JSON files and the table go (default runs/bench)
#   BENCH_PYTHON=PY   the Python with torch (default python3); without torch the
#                     PyTorch columns say "torch not installed" and cnn's side still runs
#   BENCH_TTA=0|1     run bench/tta.py (default: 1 on cuda, 0 on cpu)
#   BENCH_THREADS=N   CPU threads for both sides (default: $OMP_NUM_THREADS or nproc)
#   BENCH_ROUNDS=R    CPU: interleaved rounds of cnn and PyTorch (default 3; quick 1)
#   BENCH_CNN_FLAGS=F CPU: more flags for every cnn bench run, e.g. "--conv-engine dnnl"
#   BENCH_CNN_S=S     seconds for all cnn bench runs together (default: 110 quick on a
#                     GPU, else unbounded); runs that no longer fit are skipped, and say so
#   BENCH_PT_S=S      seconds for the PyTorch stage on a GPU with BENCH_QUICK=1 (110)
#   BENCH_TTA_S=S     time limit of each side of the time-to-accuracy run (45 quick, 600)
#   BUILD=DIR         the build folder holding cnn (default build)
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
CNN=${CNN:-$BUILD/cnn}
OUT=${BENCH_OUT:-runs/bench}
QUICK=${BENCH_QUICK:-0}
PY=${BENCH_PYTHON:-python3}
DEVICE=${BENCH_DEVICE:-auto}
THREADS=${BENCH_THREADS:-${OMP_NUM_THREADS:-$(nproc)}}
T0=$(date +%s)

mkdir -p "$OUT" || exit 1
rm -f "$OUT"/*.json "$OUT"/*.log "$OUT"/table.md
if [ "$DEVICE" = auto ]; then
  if "$CNN" devices --json 2>/dev/null | grep -q '"compute_capability"'; then DEVICE=cuda; else DEVICE=cpu; fi
fi
TTA=${BENCH_TTA:-$([ "$DEVICE" = cuda ] && echo 1 || echo 0)}
export OMP_NUM_THREADS=$THREADS
elapsed() { echo "$(( $(date +%s) - T0 )) s"; }
if [ "$QUICK" = 1 ] && [ "$DEVICE" = cuda ]; then CNN_S=${BENCH_CNN_S:-110}; else CNN_S=${BENCH_CNN_S:-0}; fi
CNN_END=$(( T0 + CNN_S ))
echo "make bench: device $DEVICE, quick $QUICK, threads $THREADS, results in $OUT"
UPTIME_START=$(uptime)
echo "  $UPTIME_START"

HAVE_BENCH=1
"$CNN" bench --help >/dev/null 2>&1 || HAVE_BENCH=0
[ "$HAVE_BENCH" = 1 ] || echo "  $CNN has no bench command: cnn's columns will say so"

# cnn_bench NAME TIMEOUT MODEL PRECISION BATCH [more cnn bench flags]: cnn-NAME.json, or
# on failure a JSON naming the error (the table shows it)
cnn_bench() {
  local name=$1 limit=$2 model=$3 prec=$4 batch=$5
  shift 5
  local json="$OUT/cnn-$name.json" log="$OUT/cnn-$name.log" rc=0 left
  if [ "$CNN_S" -gt 0 ]; then # the stage's time budget
    left=$(( CNN_END - $(date +%s) ))
    [ "$left" -lt "$limit" ] && limit=$left
  fi
  if [ "$limit" -lt 5 ]; then
    echo "skipped: the cnn runs' time budget (BENCH_CNN_S=$CNN_S) is spent" >"$log"
    rc=125
  elif [ "$HAVE_BENCH" = 1 ]; then
    timeout "$limit" "$CNN" bench "models/$model.cfg" --device "$DEVICE" --precision "$prec" \
      --batch "$batch" --json "$json" "$@" >"$log" 2>&1 || rc=$?
  else
    echo "$CNN has no bench command" >"$log"
    rc=127
  fi
  if [ "$rc" != 0 ] || [ ! -s "$json" ]; then
    local why
    why=$(tail -n 1 "$log" 2>/dev/null)
    [ "$rc" = 124 ] && why="timed out after $limit s"
    local infer_only=0
    case " $* " in *" --infer "*) infer_only=1 ;; esac
    "$PY" -c 'import json, sys
json.dump({"tool": "cnn", "model": sys.argv[2], "precision": sys.argv[3],
           "batch": int(sys.argv[4]), "device": sys.argv[5], "error": sys.argv[6],
           "infer_only": sys.argv[7] == "1"},
          open(sys.argv[1], "w"))' "$json" "$model" "$prec" "$batch" "$DEVICE" \
      "exit $rc: ${why:-no output}" "$infer_only"
    echo "  cnn $name: failed (exit $rc: $why)"
  else
    echo "  cnn $name: ok ($(elapsed))"
  fi
}

# ---- GPU: cnn, then PyTorch ---------------------------------------------------------------
if [ "$DEVICE" = cuda ]; then
  if [ "$QUICK" = 1 ]; then S=(--steps 20 --warmup 5); LIM=90; else S=(); LIM=300; fi
  cnn_bench lenet-fp32-b128 $LIM lenet fp32 128 --no-layers "${S[@]}"
  cnn_bench resnet9-bf16-b512 $LIM resnet9 bf16 512 --no-layers "${S[@]}"
  cnn_bench resnet50-bf16-b256 $LIM resnet50 bf16 256 --no-layers "${S[@]}"
  [ "$QUICK" = 1 ] || cnn_bench mobilenet_v2-bf16-b256 $LIM mobilenet_v2 bf16 256 --no-layers
  for m in resnet9 resnet50 mobilenet_v2; do # fp32 batch-1 latency (lenet's comes above)
    cnn_bench $m-fp32-b1 $LIM $m fp32 1 --infer --no-layers "${S[@]}"
  done
  # per-layer times with our conv engine and with cuDNN (resnet9: small channels first)
  for e in own cudnn; do
    cnn_bench resnet9-bf16-b512-$e $LIM resnet9 bf16 512 --conv-engine $e "${S[@]}"
    cnn_bench resnet50-bf16-b256-$e $LIM resnet50 bf16 256 --conv-engine $e "${S[@]}"
  done
  echo "cnn side done ($(elapsed))"

  PT=("$PY" bench/pytorch_models.py --device "$DEVICE" --json "$OUT/pytorch.json" --threads "$THREADS")
  if [ "$QUICK" = 1 ]; then
    G=eager,channels_last,cuda_graph
    timeout "${BENCH_PT_S:-110}" "${PT[@]}" --quick \
      --job lenet:fp32:train,infer,latency:$G \
      --job resnet9:bf16:train:$G,compile --job resnet9:bf16:infer,latency:$G \
      --job resnet50:bf16:train,infer,latency:$G \
      --job resnet9:fp32:latency:eager,cuda_graph --job resnet50:fp32:latency:eager,cuda_graph \
      --job mobilenet_v2:fp32:latency:eager,cuda_graph
  else
    A=eager,channels_last,cuda_graph,compile
    timeout 1200 "${PT[@]}" \
      --job lenet:fp32:train,infer,latency:$A --job resnet9:bf16:train,infer,latency:$A \
      --job resnet50:bf16:train,infer,latency:$A --job mobilenet_v2:bf16:train,infer,latency:$A \
      --job resnet9:fp32:latency:$A --job resnet50:fp32:latency:$A \
      --job mobilenet_v2:fp32:latency:$A
  fi
  echo "PyTorch side done ($(elapsed))"
fi

# ---- CPU: cnn and PyTorch interleaved, BENCH_ROUNDS rounds ------------------------------
# issue 11's rows: lenet and fashion training + inference at batch 128 (one cnn run each),
# resnet9 training at 64 and inference at 128 (two runs: the second --infer); every cnn
# run also measures the batch-1 latency. PyTorch: fp32 (eager, channels_last, compile
# without BENCH_QUICK; 10 steps, at most 15 s a measurement) and bf16 autocast, the same
# batches. cnn runs at --precision auto
# (bf16 only on CPUs with bf16 units; the JSON says which). Files: cnn-rR-NAME.json and
# pytorch-rR-MODEL.json; bench/table.py reduces the rounds to medians.
if [ "$DEVICE" != cuda ]; then
  ROUNDS=${BENCH_ROUNDS:-$([ "$QUICK" = 1 ] && echo 1 || echo 3)}
  read -r -a CNN_FLAGS <<<"${BENCH_CNN_FLAGS:-}"
  # bf16 autocast: all the fp32 modes where the CPU has bf16 units (AVX512-BF16, AMX);
  # elsewhere it is an emulation (resnet9 trains at about 1 image/s on 2 cores), for
  # reference only: eager alone, in the first round, 2 steps after 1 warm-up
  if grep -qwE 'avx512_bf16|amx_bf16' /proc/cpuinfo 2>/dev/null; then BF16_UNITS=1; else BF16_UNITS=0; fi
  if [ "$QUICK" = 1 ]; then
    S=(--steps 3 --warmup 1); LIM=300
    PTS=(--quick --steps 3 --warmup 1); MF=eager,channels_last; LIMP=600
  else
    S=(--steps 10 --warmup 2); LIM=900
    PTS=(--steps 10 --warmup 2 --seconds 15); MF=eager,channels_last,compile; LIMP=1800
  fi
  MB=$([ "$BF16_UNITS" = 1 ] && echo "$MF" || echo eager)
  PTX=()
  # pt_run NAME JOB...: pytorch-NAME.json (rewritten after every measurement, so a
  # timeout keeps what was measured); PTX: more options
  # bf16_run R MODEL JOB...: PyTorch's bf16 autocast jobs of round R, with the fp32 ones on a
  # CPU with bf16 units, else on their own (first round only, fewer steps)
  bf16_run() {
    local r=$1 m=$2
    shift 2
    [ "$BF16_UNITS" = 1 ] || [ "$r" = 1 ] || return 0
    PTX=(--steps 2 --warmup 1 --seconds 5)
    pt_run r$r-$m-bf16 "$@"
    PTX=()
  }
  pt_run() {
    local name=$1 rc=0 args=()
    shift
    for j in "$@"; do args+=(--job "$j"); done
    timeout "$LIMP" "$PY" bench/pytorch_models.py --device cpu --threads "$THREADS" "${PTS[@]}" \
      "${PTX[@]}" --json "$OUT/pytorch-$name.json" "${args[@]}" >"$OUT/pytorch-$name.log" 2>&1 || rc=$?
    if [ "$rc" = 0 ]; then echo "  pytorch $name: ok ($(elapsed))"
    else echo "  pytorch $name: exit $rc ($(tail -n 1 "$OUT/pytorch-$name.log"))"; fi
  }
  echo "$ROUNDS round(s); cnn flags: ${BENCH_CNN_FLAGS:-none}"
  for r in $(seq 1 "$ROUNDS"); do
    echo "round $r of $ROUNDS ($(elapsed))"
    for m in lenet fashion; do
      cnn_bench r$r-$m-b128 $LIM $m auto 128 --no-layers "${S[@]}" "${CNN_FLAGS[@]}"
      B=($m:bf16:train,infer,latency:$MB:128)
      if [ "$BF16_UNITS" = 1 ]; then pt_run r$r-$m $m:fp32:train,infer,latency:$MF:128 "${B[@]}"
      else pt_run r$r-$m $m:fp32:train,infer,latency:$MF:128; bf16_run $r $m "${B[@]}"; fi
    done
    cnn_bench r$r-resnet9-b64 $LIM resnet9 auto 64 --no-layers "${S[@]}" "${CNN_FLAGS[@]}"
    cnn_bench r$r-resnet9-b128-infer $LIM resnet9 auto 128 --infer --no-layers "${S[@]}" \
      "${CNN_FLAGS[@]}"
    F=(resnet9:fp32:train:$MF:64 resnet9:fp32:infer,latency:$MF:128)
    B=(resnet9:bf16:train:$MB:64 resnet9:bf16:infer,latency:$MB:128)
    if [ "$BF16_UNITS" = 1 ]; then pt_run r$r-resnet9 "${F[@]}" "${B[@]}"
    else pt_run r$r-resnet9 "${F[@]}"; bf16_run $r resnet9 "${B[@]}"; fi
  done
  echo "cnn and PyTorch done ($(elapsed))"
fi

# ---- time to accuracy --------------------------------------------------------------------
if [ "$TTA" = 1 ]; then
  TL=${BENCH_TTA_S:-$([ "$QUICK" = 1 ] && echo 45 || echo 600)}
  "$PY" bench/tta.py --device "$DEVICE" --cnn "$CNN" --timeout "$TL" --json "$OUT/tta.json" \
    || echo "  bench/tta.py failed"
  echo "time to accuracy done ($(elapsed))"
fi

# the run itself: load averages at the start and the end (other work on the machine skews
# every figure), the CPU, rounds, threads and flags; bench/table.py prints them
UPTIME_END=$(uptime)
echo "  $UPTIME_END"
"$PY" -c 'import json, platform, sys
cpu = platform.processor() or platform.machine()
try:
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
except OSError:
    pass
load = lambda u: [float(x.strip(" ,")) for x in u.rsplit("load average:", 1)[-1].split(",")[:3]]
a = sys.argv
json.dump({"tool": "run", "device": a[2], "cpu_model": cpu, "nproc": int(a[3]),
           "threads": int(a[4]), "quick": a[5] == "1", "rounds": int(a[6]) if a[6] else None,
           "cnn_flags": a[7], "uptime_start": a[8], "uptime_end": a[9],
           "loadavg_start": load(a[8]), "loadavg_end": load(a[9]),
           "seconds": int(a[10])}, open(a[1], "w"), indent=1)' \
  "$OUT/run.json" "$DEVICE" "$(nproc)" "$THREADS" "$QUICK" "${ROUNDS:-}" "${BENCH_CNN_FLAGS:-}" \
  "$UPTIME_START" "$UPTIME_END" "$(( $(date +%s) - T0 ))" || echo "  could not write run.json"

echo
"$PY" bench/table.py "$OUT" --out "$OUT/table.md"
echo "make bench: $(elapsed) in all; the table is in $OUT/table.md"
