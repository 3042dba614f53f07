#!/usr/bin/env bash
# The GPU figures, in one run (< 8 min on one H200): the CUDA tests, training seconds per frame at
# 128^3 and with the `quality` preset (160^3), stream decode with hardware decode (hwaccel auto) and
# render fps at 1080p.
#
#   benchmarks/gpu.sh [OUT_DIR]        (default: benchmarks/results/gpu)
#
# Writes OUT_DIR/gpu.json (machine-readable) and OUT_DIR/gpu.md. Without a CUDA device it says so
# and exits 2. Every step has its own time limit; a failed step is recorded, the others still run.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-benchmarks/results/gpu}
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
FV=("$PY" -m featvid.cli)
mkdir -p "$OUT"
W=$(mktemp -d /tmp/featvid-gpu.XXXXXX)
"$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 3)" \
  || { echo "gpu.sh: no CUDA device (torch.cuda.is_available() is False)" >&2; exit 2; }

step() {  # step NAME LIMIT_S COMMAND...: output in $W/NAME.log, exit status and seconds in $W/NAME.rc
  local name=$1 limit=$2; shift 2
  local t0=$(date +%s.%N)
  timeout "$limit" "$@" >"$W/$name.log" 2>&1
  local rc=$?
  echo "$rc $(echo "$(date +%s.%N) - $t0" | bc)" >"$W/$name.rc"
  echo "gpu.sh: $name: exit $rc"
}

step cuda_tests 180 "$PY" -m pytest -q -p no:cacheprovider tests/render/test_fast.py tests/codecs/test_faults.py \
  tests/bake/test_train.py -k "cuda or half or fast"
step synth 90 "${FV[@]}" synth "$W/scene" --frames 4 --views 12 --size 256
step train_128 180 "${FV[@]}" train "$W/scene" --out "$W/run" --preset default --grid 128 --device cuda
# the `quality` preset (160^3, 10000-16000 iterations a keyframe) on the first frame: its PSNR and s/frame
step train_quality 200 "${FV[@]}" train "$W/scene" --out "$W/run_quality" --preset quality --frames 0:1 --device cuda
step bake 60 "${FV[@]}" bake "$W/run" --out "$W/baked"
step encode 60 "${FV[@]}" encode "$W/baked" --out "$W/scene.fvv"
step decode_hwaccel 60 "${FV[@]}" play "$W/scene.fvv" --decode-only --hwaccel auto --device cuda
step decode_software 60 "${FV[@]}" play "$W/scene.fvv" --decode-only --hwaccel none --device cuda
step render_1080p 90 "${FV[@]}" play "$W/scene.fvv" --size 1920x1080 --device cuda --frames 120

"$PY" - "$W" "$OUT" <<'PY'
import json, re, sys
from pathlib import Path
import torch
work, out = Path(sys.argv[1]), Path(sys.argv[2])
steps = {}
for rc in sorted(work.glob("*.rc")):
    code, seconds = rc.read_text().split()
    log = (work / f"{rc.stem}.log").read_text(errors="replace")
    steps[rc.stem] = {"exit": int(code), "seconds": round(float(seconds), 1), "tail": log.strip().splitlines()[-3:]}
result = {"device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none", "torch": torch.__version__,
          "steps": steps}
log = work / "run" / "log.jsonl"
if log.is_file():
    records = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    result["train_128"] = {"keyframe_s": records[0].get("train_seconds"),
                           "later_frame_s": [r.get("train_seconds") for r in records[1:]],
                           "psnr_test": [r.get("psnr_test") for r in records]}
log = work / "run_quality" / "log.jsonl"
if log.is_file():
    first = json.loads(log.read_text().splitlines()[0])
    result["train_quality"] = {"keyframe_s": first.get("train_seconds"), "iters": first.get("iters"),
                               "psnr_test": first.get("psnr_test")}
def figure(name, pattern):
    text = " ".join(steps.get(name, {}).get("tail", []))
    m = re.search(pattern, text)
    return float(m.group(1)) if m else None
result["decode_fps_hwaccel"] = figure("decode_hwaccel", r"ms/frame, ([\d.]+) fps")
result["decode_fps_software"] = figure("decode_software", r"ms/frame, ([\d.]+) fps")
result["render_fps_1080p"] = figure("render_1080p", r"render [\d.]+ ms/frame \(([\d.]+) fps\)")
(out / "gpu.json").write_text(json.dumps(result, indent=1) + "\n")
lines = ["# GPU figures (benchmarks/gpu.sh)", "", f"Device: {result['device']}, torch {result['torch']}.", "",
         "| step | exit | s |", "|---|---:|---:|"]
lines += [f"| {k} | {v['exit']} | {v['seconds']} |" for k, v in steps.items()]
lines += ["", f"- training at 128^3 (`default` preset): {result.get('train_128')}",
          f"- the `quality` preset (160^3), first frame: {result.get('train_quality')}",
          f"- decode fps: hwaccel {result['decode_fps_hwaccel']}, software {result['decode_fps_software']}",
          f"- render fps at 1920x1080: {result['render_fps_1080p']}"]
(out / "gpu.md").write_text("\n".join(lines) + "\n")
print("\n".join(lines))
PY
rm -rf "$W"
