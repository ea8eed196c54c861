#!/usr/bin/env bash
# One entry point for a fresh machine:
#   bash scripts/dev.sh demo    set everything up, then run `defectlens demo`
#   bash scripts/dev.sh test    set everything up, then lint, type-check and run the tests
#   bash scripts/dev.sh setup   only set up (.venv with PyTorch, the project and its tools)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VENV=$ROOT/.venv
PY=$VENV/bin/python

log() { printf '\n== %s\n' "$*"; }

pip_install() {
  # pip and setuptools print pages of packaging warnings even when all goes well: keep their
  # output in a log and show it only if pip fails, then stop with pip's exit status.
  local pip_log=$ROOT/build/pip.log status=0
  mkdir -p "$ROOT/build"
  "$PY" -m pip install "$@" >"$pip_log" 2>&1 || status=$?
  if [ "$status" -ne 0 ]; then
    cat "$pip_log" >&2
    echo "error: pip install $* failed (exit status $status); output above, kept in $pip_log" >&2
    exit "$status"
  fi
}

check_disk() {
  # PyTorch's x86_64 build with its CUDA libraries takes about 6 GB in the venv: say so
  # before pip fails half-way with "No space left on device".
  local where=$1 need_gb=$2 free_gb
  free_gb=$(df -Pk "$(dirname "$where")" | awk 'NR == 2 { print int($4 / 1048576) }')
  if [ "$free_gb" -lt "$need_gb" ]; then
    echo "error: $need_gb GB of free disk needed for PyTorch in $where; $free_gb GB free" >&2
    exit 2
  fi
}

setup_system() {
  # Real servers and a real browser for the tests: PostgreSQL (the store runs on SQLite and
  # PostgreSQL alike), mosquitto (the MQTT sink, started by tests/mqtt_broker.py), Chromium
  # (reports rendered to PNG). One apt run for whatever is missing.
  local missing=()
  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
  command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || missing+=(mosquitto)
  [ -x /usr/bin/chromium ] || missing+=(chromium)
  # The reports page in Simplified Chinese needs a CJK font in the browser.
  [ -d /usr/share/fonts/opentype/noto ] && ls /usr/share/fonts/opentype/noto/NotoSansCJK* \
    >/dev/null 2>&1 || missing+=(fonts-noto-cjk)
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]} (Debian packages)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

setup_python() {
  if [ ! -x "$PY" ]; then
    log "creating $VENV"
    python3 -m venv "$VENV"
    pip_install -q --upgrade pip
  fi
  # torch is pinned: pip takes 2.14.1 from this machine's disk; other releases pull gigabytes.
  if ! "$PY" -c "import torch, torchvision" >/dev/null 2>&1; then
    check_disk "$VENV" 8
    log "installing PyTorch 2.14.1 / torchvision 0.29.1"
    pip_install -q --no-cache-dir torch==2.14.1 torchvision==0.29.1
  fi
  log "installing defectlens (editable) with training and development extras"
  pip_install -q -e ".[train,dev]"
  "$PY" -c "import defectlens.train, defectlens.inference" # fail here, not in the tests
}

typecheck_tree() {
  # mypy and import-linter read packages from folders; the client's layout maps top-level
  # folders to subpackages, so give them a folder view of `defectlens` made of symlinks.
  # Links are renewed in place, never the folder removed, so two checks at once both see it.
  local view=$ROOT/build/pkgview
  mkdir -p "$view/defectlens"
  for entry in "$ROOT"/defectlens/*; do ln -sfn "$entry" "$view/defectlens/"; done
  for sub in datasets models train inference configs; do
    ln -sfn "$ROOT/$sub" "$view/defectlens/$sub"
  done
  find "$view/defectlens" -maxdepth 1 -xtype l -delete  # links to files since removed
  echo "$view"
}

run_checks() {
  log "ruff"
  "$VENV/bin/ruff" check .
  "$VENV/bin/ruff" format --check .
  local view
  view=$(typecheck_tree)
  log "mypy"
  (cd "$view" && "$VENV/bin/mypy" --config-file "$ROOT/pyproject.toml" -p defectlens)
  log "import-linter (architecture contracts)"
  (cd "$view" && PYTHONPATH="$view" "$VENV/bin/lint-imports" "$ROOT/pyproject.toml")
}

run_tests() {
  log "pytest"
  "$VENV/bin/pytest" -q -p no:cacheprovider --durations=10 "$@"
}

command=${1:-}
shift || true
case "$command" in
  setup) setup_system; setup_python ;;
  demo) setup_system; setup_python; "$VENV/bin/defectlens" demo "$@" ;;
  test) setup_system; setup_python; run_checks; run_tests "$@" ;;
  check) run_checks ;;
  *) echo "usage: bash scripts/dev.sh demo|test|setup|check" >&2; exit 2 ;;
esac
