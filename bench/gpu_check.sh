#!/usr/bin/env bash
# One check run on an NVIDIA GPU machine: parity on the tiny fixture, the WebGPU kernel tests, the
# benchmark on WebGPU and the PyTorch baseline, each under its own timeout, all inside one time budget
# (default 510 s, inside the 600 s given to the whole command). Every step continues when an earlier one fails.
#
# Before, on a machine with the registries: fill .gpu/ (ignored by git) with the Vulkan loader's .debs, a compressed
# deno, a slim node_modules and .gpu/env.sh, which installs the loader, puts deno on PATH and unpacks node_modules on
# the GPU machine (bench/README.md); then
#   bash bench/gpu_check.sh --prepare        # checks for .gpu/env.sh; copies the parity fixture into .gpu/fixtures
# On the GPU machine (the working tree and .gpu/ copied there, a limit of 600 s):
#   source .gpu/env.sh; bash bench/gpu_check.sh
#
# Outputs go to $OUT (the folder the runner brings back; ./runs/gpu_check when unset), eight files:
#   summary.txt      environment, each step's status and time, the headline figures, the targets as ratios
#   parity.log       deno task parity <fixture> --backend webgpu --matmul tiled | large | large-f16, and
#                    --attention flash | rows (the default is matmul)
#   webgpu_test.log  deno test -A tests/webgpu_ops_test.ts
#   bench.log        deno task bench --backend webgpu --json --all-layouts --steps 10 --warmup 2
#                    --only matmul,step,dispatch,classify --classify-shape gpt2
#                    --matmul-kernels tiled,large,auto,tune,large-f16 (JSON last line)
#   steps.log        the step alone at T = 128; at T = 256 with GPT2_SFT_ATTENTION=flash, and =rows; at T = 256
#                    with --flush-every 32 (submits of 32 dispatches instead of 256), and with
#                    --no-flush-ramp (no ramp from 16 dispatches after each sync; with the dispatch part:
#                    where record_us is higher with the ramp, a submit waits for the GPU); at T = 256 with
#                    --profile (GPU time per kernel from timestamp queries); at T = 256 with GPT2_SFT_MATMUL=tune
#                    (a JSON line each)
#   pytorch.log      python3 bench/pytorch_bench.py (JSON last line)
#   tta.log          bench/time_to_accuracy.ts --backend webgpu --pad both, then the notebook's loop from the same
#                    start: bench/pytorch_time_to_accuracy.py --device cuda (a JSON line each)
#   generate.log     bench/generate.ts --backend webgpu --shape gpt2 --n 16 --new-tokens 32: evaluation's
#                    generation one prompt at a time vs batched (JSON last line)
# Environment: GPU_CHECK_BUDGET (seconds, default 510), FIXTURES (a tiny-gpt2-zh dir), BENCH_STEPS (default 10),
# GPU_CHECK_QUICK=1 (bench and PyTorch with --quick: a smoke test of this script on a machine without a GPU).
set -u

cd "$(dirname "$0")/.." || exit 1
root=$(pwd)

# ---------------------------------------------------------------- --prepare (run here, not there)
if [ "${1:-}" = "--prepare" ]; then
  src=""
  for d in "${FIXTURES:-}" ./tests/fixtures/tiny-gpt2-zh; do
    if [ -n "$d" ] && [ -f "$d/reference.json" ]; then src=$d; break; fi
  done
  [ -n "$src" ] || { echo "gpu_check --prepare: no fixture dir found (tests/fixtures/tiny-gpt2-zh)" >&2; exit 1; }
  [ -f .gpu/env.sh ] || echo "gpu_check --prepare: note: .gpu/env.sh is missing; prepare .gpu/ first (bench/README.md)" >&2
  mkdir -p .gpu/fixtures/tiny-gpt2-zh
  # only what src/parity.ts reads; .gpu/ is ignored by git, so nothing lands in the repo
  cp -r "$src/model" "$src/model-bin" "$src/reference.json" "$src/reference.safetensors" .gpu/fixtures/tiny-gpt2-zh/
  du -sh .gpu .gpu/fixtures 2>/dev/null
  echo "ready: device run with carry [\".gpu\"]: source .gpu/env.sh; bash bench/gpu_check.sh"
  exit 0
fi

# ---------------------------------------------------------------- setup
OUT=${OUT:-$root/runs/gpu_check}
mkdir -p "$OUT"
budget=${GPU_CHECK_BUDGET:-510}
steps=${BENCH_STEPS:-10}
quick=()
# the full bench: five matmul kernels and the real-shape classifier; the smoke test (lavapipe) keeps it short
# (time to accuracy runs in its own step below, with the PyTorch side)
bench_extra=(--only matmul,step,dispatch,classify --classify-shape gpt2 --matmul-kernels tiled,large,auto,tune,large-f16)
tta_quick=""
if [ "${GPU_CHECK_QUICK:-0}" = 1 ]; then
  quick=(--quick)
  bench_extra=(--only matmul,step,dispatch,classify --classify-shape tiny --matmul-kernels tiled,large --quick)
  tta_quick="--train 200 --eval-n 20 --eval-every 10 --max-steps 20 --untimed-steps 2"
fi
start=$(date +%s)
summary="$OUT/summary.txt"
: > "$summary"
export PYTHONUNBUFFERED=1 NO_COLOR=1

say() { echo "$*" | tee -a "$summary"; }

if ! command -v deno >/dev/null 2>&1 && [ -f .gpu/env.sh ]; then
  # shellcheck disable=SC1091
  source .gpu/env.sh
fi
DENO=$(command -v deno || echo "$root/node_modules/deno/deno")

fixture=""
for d in "${FIXTURES:-}" ./tests/fixtures/tiny-gpt2-zh .gpu/fixtures/tiny-gpt2-zh; do
  if [ -n "$d" ] && [ -f "$d/reference.json" ]; then fixture=$d; break; fi
done

say "gpu_check $(date -u +%FT%TZ) in $root, budget ${budget}s, outputs in $OUT"
say "host: $(uname -srm), $(nproc) cpus"
if command -v nvidia-smi >/dev/null 2>&1; then
  say "gpu: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | head -1)"
else
  say "gpu: nvidia-smi not found"
fi
say "deno: $("$DENO" --version 2>&1 | head -1) ($DENO)"
say "python3: $(python3 -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__, "cuda", torch.cuda.is_available())' 2>&1 | tail -1)"
say "vulkan: $(ldconfig -p 2>/dev/null | grep -c libvulkan) libvulkan entries; VK_DRIVER_FILES=${VK_DRIVER_FILES:-unset}"
say "fixture: ${fixture:-none found (run bench/gpu_check.sh --prepare here and carry .gpu)}"
say ""

# run_step NAME LOG MAX_SECONDS CMD...: runs with a timeout cut to what is left of the budget
run_step() {
  local name=$1 log=$2 max=$3
  shift 3
  local left=$((budget - ($(date +%s) - start)))
  local t=$max
  [ "$left" -lt "$t" ] && t=$left
  if [ "$t" -lt 15 ]; then
    say "[skip] $name: only ${left}s of the budget left"
    echo "skipped: budget spent" > "$log"
    return 0
  fi
  local t0 rc
  t0=$(date +%s)
  echo "\$ $*  (timeout ${t}s)" > "$log"
  timeout -k 10 "$t" "$@" >> "$log" 2>&1
  rc=$?
  local dt=$(($(date +%s) - t0))
  local status=ok
  [ $rc -ne 0 ] && status="FAILED rc=$rc"
  [ $rc -eq 124 ] || [ $rc -eq 137 ] && status="TIMED OUT after ${t}s"
  say "[$status] $name (${dt}s) -> $log"
  return 0
}

# ---------------------------------------------------------------- the steps
if [ -n "$fixture" ]; then
  run_step "parity (webgpu)" "$OUT/parity.log" 150 sh -c \
    "r=0; for k in tiled large large-f16; do '$DENO' task parity '$fixture' --backend webgpu --matmul \$k || r=1; done; for a in flash rows; do '$DENO' task parity '$fixture' --backend webgpu --attention \$a || r=1; done; exit \$r"
else
  say "[skip] parity: no fixture dir"
  echo "skipped: no fixture dir" > "$OUT/parity.log"
fi

run_step "bench webgpu B=4 T=256" "$OUT/bench.log" 150 \
  "$DENO" task bench --backend webgpu --json --all-layouts --steps "$steps" --warmup 2 "${bench_extra[@]}"

run_step "pytorch baseline" "$OUT/pytorch.log" 150 python3 bench/pytorch_bench.py ${quick[@]+"${quick[@]}"}

q="${quick[*]}" # the same flag, as a word inside the sh -c string
run_step "bench webgpu steps: T=128; T=256 with flash, then rows attention; submits of 32; no ramp; profiled; tuned" "$OUT/steps.log" 250 sh -c \
  "r=0; '$DENO' task bench --backend webgpu --json --only step --seq 128 --steps $steps --warmup 2 $q || r=1; \
   GPT2_SFT_ATTENTION=flash '$DENO' task bench --backend webgpu --json --only step --steps $steps --warmup 2 $q || r=1; \
   GPT2_SFT_ATTENTION=rows '$DENO' task bench --backend webgpu --json --only step --steps $steps --warmup 2 $q || r=1; \
   '$DENO' task bench --backend webgpu --json --only step --flush-every 32 --steps $steps --warmup 2 $q || r=1; \
   '$DENO' task bench --backend webgpu --json --only step,dispatch --no-flush-ramp --steps $steps --warmup 2 $q || r=1; \
   '$DENO' task bench --backend webgpu --json --only step --steps 3 --warmup 1 --profile $q || r=1; \
   GPT2_SFT_MATMUL=tune '$DENO' task bench --backend webgpu --json --only step --steps $steps --warmup 2 $q || r=1; \
   exit \$r"

tta_init=$(mktemp -d)
run_step "time to 99 % (tiny model), ours then PyTorch" "$OUT/tta.log" 120 sh -c \
  "'$DENO' run -A bench/time_to_accuracy.ts --backend webgpu --pad both --json --save-init '$tta_init' $tta_quick && python3 bench/pytorch_time_to_accuracy.py '$tta_init' --device cuda --json"
rm -rf "$tta_init"

gen_shape=gpt2
[ -n "$tta_quick" ] && gen_shape=tiny
run_step "generation (evaluation's), one prompt at a time vs batched" "$OUT/generate.log" 90 \
  "$DENO" run -A bench/generate.ts --backend webgpu --shape "$gen_shape" --n 16 --new-tokens 32 --json

run_step "webgpu kernel tests" "$OUT/webgpu_test.log" 150 "$DENO" test -A tests/webgpu_ops_test.ts

# ---------------------------------------------------------------- headline figures
say ""
say "parity: $(grep -E '^(PASS|FAIL): |^parity: ' "$OUT/parity.log" 2>/dev/null | tr '\n' ' ')"
say "webgpu tests: $(grep -E '^(ok|FAILED) \|' "$OUT/webgpu_test.log" 2>/dev/null | tail -1)"
python3 - "$OUT" 2>&1 <<'PY' | tee -a "$summary"
import json, os, sys
out = sys.argv[1]
def json_lines(name):
    try:
        with open(os.path.join(out, name)) as f:
            return [json.loads(l) for l in f.read().splitlines() if l.startswith("{")]
    except Exception as e:
        print(f"{name}: not available ({e.__class__.__name__})")
        return []
def load(name):
    lines = json_lines(name)
    if not lines:
        print(f"{name}: no JSON line")
    return lines[-1] if lines else None
def step_line(tag, d, s):
    if s:
        b2b = f" (back to back: {s['back_to_back_ms']:.1f} ms/step)" if s.get("back_to_back_ms") else ""
        print(f"{tag}: {d.get('device')}: B={s['B']} T={s['T']} {s['ms']:.1f} ms/step{b2b}, {s['tokens_per_s']:.0f} tokens/s")
b = load("bench.log")
if b:
    step_line("webgpu step", b, b.get("step"))
    for m in b.get("matmul", []):
        print(f"webgpu matmul {m.get('kernel', '')} {m['shape']} {m['role']} {m['layout']}: {m['ms']:.3f} ms, {m['gflops']:.0f} GFLOP/s")
    print(f"webgpu peak GPU buffers: {b.get('peak_bytes', 0) / 2**20:.0f} MiB")
    c = b.get("classify")
    if c:
        print(f"webgpu classify ({c['shape']}, {c['examples']} examples): notebook {c['notebook_ms_per_example']:.1f} "
              f"ms/example, ours {c['batched_ms_per_example']:.1f} ({c['speedup_batched']:.1f}x)")
if b and b.get("step"):
    s = b["step"]
    print(f"webgpu step host side: {s.get('host_ms', 0):.1f} ms recording, {s.get('dispatches')} dispatches in "
          f"{s.get('submits')} submits")
steps = json_lines("steps.log")
b2 = next((x for x in steps if x.get("step") and x["step"]["T"] == 128 and not x["step"].get("profile")), None)
bf = next((x for x in steps if "attention flash" in x.get("device", "") and x.get("step")), None)
br = next((x for x in steps if "attention rows" in x.get("device", "") and x.get("step")), None)
bs = next((x for x in steps if "submits every" in x.get("device", "") and x.get("step")), None)
bn = next((x for x in steps if "no submit ramp" in x.get("device", "") and x.get("step")), None)
bp = next((x for x in steps if x.get("step") and x["step"].get("profile")), None)
bt = next((x for x in steps if x.get("step") and x["step"].get("matmul_tuning")), None)
if bt:
    step_line("webgpu step, matmul tune", bt, bt.get("step"))
    for t in bt["step"]["matmul_tuning"]:
        c = ", ".join(f"{'*' if x['name'] == t['choice'] else ''}{x['name']} {x['ms']:.3f}" for x in t["candidates"])
        print(f"    tune {t['shape']:<28} {c}")
if b2:
    step_line("webgpu step", b2, b2.get("step"))
for tag, x in [("flash attention", bf), ("rows attention", br), ("submits of 32 dispatches", bs),
               ("no submit ramp after a sync", bn)]:
    if x:
        step_line(f"webgpu step, {tag} (defaults: matmul attention, submits of 256 ramping from 16)", x, x.get("step"))
if bp:
    s = bp["step"]
    total = sum(r["ms"] for r in s["profile"]) or 1
    print(f"webgpu profile (B={s['B']} T={s['T']}, per step, {s['ms']:.1f} ms wall when profiled): "
          f"{total:.1f} ms of GPU time in {s.get('dispatches')} dispatches; the largest:")
    for r in s["profile"][:20]:
        print(f"    {r['kernel']:<48} {r['calls']:6.0f} calls {r['ms']:9.3f} ms {100 * r['ms'] / total:5.1f} %")
g = load("generate.log")
if g:
    print(f"webgpu generation ({g['shape']}, {g['prompts']} prompts x {g['new_tokens'] // g['prompts']} tokens): one at a time "
          f"{g['one_at_a_time_tokens_per_s']:.0f} tokens/s, batched {g['batch']} rows {g['batched_tokens_per_s']:.0f} "
          f"tokens/s ({g['speedup']:.1f}x), same ids {g['same_ids']}/{g['prompts']}")
p = load("pytorch.log")
if p and "error" in p:
    print(f"pytorch: {p['error']}")
elif p:
    for s in p.get("steps", []):
        step_line("pytorch step", p, s)
    for m in p.get("matmul", []):
        print(f"{p.get('backend')} sgemm {m['shape']} {m['role']} {m['layout']}: {m['ms']:.4f} ms, {m['gflops']:.0f} GFLOP/s")
    c = p.get("classify")
    if c:
        print(f"pytorch classify: {c['forwards']} forwards, {c['ms_per_prompt']:.2f} ms per prompt")

# ---- the performance targets as ratios, both sides from this run
print("")
print("goals (both sides measured in this run):")
if b and p and "error" not in p:
    torch_mm = {(m["shape"], m["role"]): m for m in p.get("matmul", [])}
    by_kernel = {}
    for m in b.get("matmul", []):
        t = torch_mm.get((m["shape"], m["role"]))
        if t:
            by_kernel.setdefault(m.get("kernel", "default"), []).append((m, t))
    for kernel, pairs in by_kernel.items():
        ratios = [m["gflops"] / t["gflops"] for m, t in pairs]
        geo = 1.0
        for r in ratios:
            geo *= r
        geo **= 1 / len(ratios)
        worst = min(zip(ratios, pairs), key=lambda x: x[0])
        print(f"  1. matmul {kernel}: {100 * geo:.0f} % of cuBLAS fp32 (geo-mean of {len(ratios)} shapes; "
              f"worst {100 * worst[0]:.0f} % at {worst[1][0]['shape']} {worst[1][0]['role']}); goal >= 40 %")
    ours_steps = [(tag, x["step"]) for tag, x in [("", b), ("", b2), (", matmul tune", bt)] if x and x.get("step")]
    if bf and bf.get("step"):
        s, t = bf["step"], next((q for q in p.get("steps", []) if q.get("T") == bf["step"]["T"]), None)
        if t:
            print(f"  2. step B={s['B']} T={s['T']} with flash attention: ours {s['ms']:.1f} ms, PyTorch {t['ms']:.1f} ms: "
                  f"PyTorch/ours = {t['ms'] / s['ms']:.2f}; peak GPU buffers {bf.get('peak_bytes', 0) / 2**20:.0f} MiB")
    for tag, s in ours_steps:
        t = next((q for q in p.get("steps", []) if q.get("T") == s["T"] and q.get("B") == s["B"]), None)
        if t:
            print(f"  2. step B={s['B']} T={s['T']}{tag}: ours {s['ms']:.1f} ms, PyTorch {t['ms']:.1f} ms: "
                  f"PyTorch/ours = {t['ms'] / s['ms']:.2f} (goal >= 1)")
            if s.get("back_to_back_ms"):
                print(f"     ours back to back, as our trainer runs (the notebook's loop syncs every step): "
                      f"{s['back_to_back_ms']:.1f} ms, PyTorch/ours = {t['ms'] / s['back_to_back_ms']:.2f}")
else:
    print("  matmul and step ratios need the JSON lines of both bench.log and pytorch.log")
if b and b.get("classify"):
    c = b["classify"]
    print(f"  3. classifier ({c['shape']}, {c['examples']} examples): {c['speedup_batched']:.1f}x the notebook's "
          f"per-label forward on the same backend (goal >= 5)")
tta = {d.get("tool"): d for d in json_lines("tta.log")}
ours, torch_tta = tta.get("time_to_accuracy"), tta.get("pytorch_time_to_accuracy")
if ours and torch_tta and ours.get("summary", {}).get("longest") and torch_tta.get("runs"):
    o, t = ours["summary"]["longest"], torch_tta["runs"][0]
    print(f"  2. time to {100 * ours['settings']['target']:g} % (tiny model): ours per-batch padding "
          f"{o['train_seconds']:.2f} s ({o['steps']} steps, reached {o['reached']}), the notebook's loop "
          f"{t['train_seconds']:.2f} s ({t['steps']} steps, reached {t['reached']}): ratio "
          f"{o['train_seconds'] / t['train_seconds']:.2f} (goal <= 0.5)")
else:
    print("  time to accuracy: tta.log lacks one side")
PY
say "total $(($(date +%s) - start))s; files in $OUT:"
ls -la "$OUT" | tee -a "$summary"
exit 0
