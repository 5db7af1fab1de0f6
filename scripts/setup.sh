#!/usr/bin/env bash
# Creates .venv with the pinned PyTorch pair and this package, then fetches the
# offline perceptual backbones. Idempotent: a stamp keyed on the install files
# makes a second run a no-op.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${DICTSR_VENV:-.venv}
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
stamp_key=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)
stamp="$VENV/.dictsr-setup-$stamp_key"
if [ -f "$stamp" ]; then exit 0; fi
echo "[setup] creating $VENV with $($PY --version)"
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
pip_q() {
  local log; log=$(mktemp)
  if ! "$VENV/bin/python" -m pip install -q --disable-pip-version-check "$@" >"$log" 2>&1; then
    grep -v -E "^WARNING: Location .* is ignored" "$log" >&2; rm -f "$log"; exit 1
  fi
  rm -f "$log"
}
pip_q torch==2.14.1 torchvision==0.29.1
pip_q -e ".[test,workbook]"
"$VENV/bin/python" -c "import torch, dictsr_core; print('[setup] torch', torch.__version__, 'cuda' if torch.cuda.is_available() else 'cpu')"
"$VENV/bin/python" -c "from dictsr_core.workbook.execute import ensure_kernel; print('[setup] jupyter kernel', ensure_kernel())"
"$VENV/bin/dictsr" weights --calibration
rm -f "$VENV"/.dictsr-setup-*
touch "$stamp"
