#!/usr/bin/env bash
# The main job on the embedded default: OKX simulator -> collector -> Snakemake -> Qlib; then the
# research notebook (research/explore.ipynb) executed on the demo's dataset and rendered to HTML.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
.venv/bin/python -m harness.demo "$@"

# The options of harness.demo the notebook step depends on
data_dir=demo-data
notebook=1
args=("$@")
for i in "${!args[@]}"; do
  case "${args[$i]}" in
    --data-dir) data_dir="${args[$((i + 1))]}" ;;
    --data-dir=*) data_dir="${args[$i]#*=}" ;;
    --no-research) notebook=0 ;;   # the notebook shows the example model's run: there is none
    -h|--help) notebook=0 ;;
  esac
done
if [ "$notebook" = 1 ]; then
  # the streamed dataset (3 days: returns and funding on 60-minute bars) and its work directory;
  # the example model's IC and equity curve from the demo's daily run (a year of the same market)
  echo "[demo] research notebook: executing research/explore.ipynb on $data_dir/qlib"
  .venv/bin/python -m research.notebook --qlib-dir "$data_dir/qlib" --work-dir "$data_dir/work" --freq 60min \
    --example-summary "$data_dir/research/daily/summary.json" --output-dir "$data_dir/notebook" \
    > /dev/null 2> "$data_dir/logs/notebook.log" \
    || { echo "[demo] research notebook failed; see $data_dir/logs/notebook.log" >&2; exit 1; }
  echo "[demo] research notebook: $data_dir/notebook/explore.html (executed notebook: $data_dir/notebook/explore.ipynb)"
fi
