#!/usr/bin/env bash
# Bring a list of dataset folders up to date against one trained run, and print a table.
#
#   docs/examples/evaluate-datasets.sh runs/ucf101 /data/batch-2026-10 /data/batch-2026-11
#
# For each folder, `vidcache evaluate RUN FOLDER` extracts the features of the videos that
# are new or changed since the last time (into RUN/eval-<folder name>/features.h5; the rest
# are found there by content) and scores the run on all of them. Run it again when nothing
# changed: no video is decoded and no CNN runs, and the table is the same.
# Extra options for `vidcache evaluate` (--weights PATH, --captions CSV...) go in VIDCACHE_EVAL_ARGS.
set -euo pipefail

RUN=${1:?usage: evaluate-datasets.sh RUN FOLDER...}
shift
[ $# -gt 0 ] || { echo "usage: evaluate-datasets.sh RUN FOLDER..." >&2; exit 2; }
VIDCACHE=${VIDCACHE:-vidcache}

for folder in "$@"; do
    # shellcheck disable=SC2086
    $VIDCACHE evaluate "$RUN" "$folder" -q ${VIDCACHE_EVAL_ARGS:-} >/dev/null
done

python3 - "$RUN" "$@" <<'PY'
import json, sys
from pathlib import Path

run, folders = Path(sys.argv[1]), sys.argv[2:]
print(f"| dataset | videos | top-1 | top-5 | macro F1 |")
print(f"|---|---:|---:|---:|---:|")
for folder in folders:
    m = json.loads((run / f"eval-{Path(folder).resolve().name}" / "metrics.json").read_text())
    if "top1" in m:
        print(f"| {folder} | {m['examples']} | {m['top1']:.3f} | {m['top5']:.3f} | {m['macro_f1']:.3f} |")
    else:  # a caption or regression run: its headline numbers
        keys = [k for k in ("bleu4", "cider_d", "mse", "mae") if k in m]
        print(f"| {folder} | {m.get('videos', '?')} | " + ", ".join(f"{k} {m[k]:.4g}" for k in keys) + " | | |")
PY
