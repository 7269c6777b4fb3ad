#!/usr/bin/env bash
# Run the MLOps pipeline. Creates .venv next to this script on first use and
# reinstalls only when requirements.txt changes; then runs run_pipeline.py.
#
# Wrapper flags whose names differ from run_pipeline.py's are mapped (--accuracy ->
# --accuracy-threshold); every other argument and subcommand is passed to
# run_pipeline.py unchanged, which rejects unknown flags with usage and exit 2.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="$HERE/.venv"
STAMP="$VENV/.requirements.sha256"
PYTHON_BIN="${PYTHON:-python3}"

usage() {
  cat <<'USAGE'
Usage: ./run_mlops_pipeline.sh [OPTIONS] [COMMAND [ARGS]...]

Runs the whole pipeline (train, gate, deploy, test, roll back on failure) on the
local backend, or on SageMaker when --role-arn is given.

Wrapper options (mapped to run_pipeline.py):
  --accuracy X            deploy threshold (run_pipeline.py --accuracy-threshold)
  --minimum-accuracy X    minimum safety threshold
  --mode MODE             full | training | deployment | testing | cleanup
  --training-job NAME     training job to deploy (--mode deployment)
  --endpoint-name NAME    endpoint to deploy to, test or clean up
  --instance-type TYPE    SageMaker instance type
  --disable-auto-deploy   train and judge, do not deploy
  --config-file FILE      JSON config (default ./pipeline_config.json)
  --output-file FILE      results JSON
  --region REGION         AWS region
  --role-arn ARN          IAM role; selects the SageMaker backend
  --verbose               DEBUG logging and tracebacks
  -h, --help              this help; run_pipeline.py --help lists every option

Commands and any other option go to run_pipeline.py unchanged, e.g.
  ./run_mlops_pipeline.sh history --endpoint-name iris-model
  ./run_mlops_pipeline.sh monitor --endpoint-name iris-model --output-file drift.json

Exit codes: 0 success, 1 pipeline failure, 2 usage/config/input error, 3 gate held or rejected.
USAGE
}

# Subcommands take their own options (and their own --help): pass them through untouched.
SUBCOMMANDS=" history status rollback cleanup jobs runs monitor "
args=()
while [[ $# -gt 0 ]]; do
  if [[ "$SUBCOMMANDS" == *" $1 "* ]]; then args+=("$@"); break; fi
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --accuracy) [[ $# -ge 2 ]] || { echo "Error: --accuracy needs a value" >&2; usage >&2; exit 2; }
                args+=(--accuracy-threshold "$2"); shift 2 ;;
    --accuracy=*) args+=(--accuracy-threshold "${1#--accuracy=}"); shift ;;
    *) args+=("$1"); shift ;;
  esac
done

ensure_venv() {
  local want
  want="$(sha256sum "$HERE/requirements.txt" | cut -d' ' -f1)"
  if [[ ! -x "$VENV/bin/python" ]]; then
    echo "Creating virtual environment in $VENV ..." >&2
    "$PYTHON_BIN" -m venv "$VENV"
  fi
  if [[ ! -f "$STAMP" || "$(cat "$STAMP")" != "$want" ]]; then
    echo "Installing requirements.txt into $VENV ..." >&2
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$HERE/requirements.txt" >&2
    echo "$want" > "$STAMP"
  fi
}

ensure_venv
exec "$VENV/bin/python" "$HERE/run_pipeline.py" "${args[@]+"${args[@]}"}"
