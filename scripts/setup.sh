#!/usr/bin/env bash
# Creates .venv with the pinned PyTorch pair and this package, then fetches the
# offline perceptual backbones and the published peers' weights (Real-ESRGAN, RealSR). Idempotent: a stamp keyed on the install files
# makes a second run a no-op. `--browser` (make test) also installs chromium for tests/test_browser.py; make main
# does not need it.
set -euo pipefail
cd "$(dirname "$0")/.."
browser=0
for arg in "$@"; do
  case "$arg" in
    --browser) browser=1 ;;
    *) echo "[setup] unknown option $arg (only --browser)" >&2; exit 2 ;;
  esac
done
VENV=${DICTSR_VENV:-.venv}
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
stamp_key=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)
stamp="$VENV/.dictsr-setup-$stamp_key"
pip_q() {
  local log; log=$(mktemp)
  if ! "$VENV/bin/python" -m pip install -q --disable-pip-version-check "$@" >"$log" 2>&1; then
    grep -v -E "^WARNING: Location .* is ignored" "$log" >&2; rm -f "$log"; exit 1
  fi
  rm -f "$log"
}
# Debian's chromium and its driver for tests/test_browser.py (JupyterLab in a real headless browser), from apt
# only: installed when running as root with apt-get, skipped quietly otherwise (that test then skips and says how).
browser_q() {
  if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then return 0; fi
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then return 0; fi
  echo "[setup] apt-get install chromium chromium-driver (for tests/test_browser.py)"
  local log; log=$(mktemp)
  local install=(apt-get install -y -q --no-install-recommends chromium chromium-driver)
  if ! DEBIAN_FRONTEND=noninteractive "${install[@]}" >"$log" 2>&1; then
    # an image whose package lists were never fetched: update once, then try again
    apt-get update -q >>"$log" 2>&1 || true
    if ! DEBIAN_FRONTEND=noninteractive "${install[@]}" >>"$log" 2>&1; then
      echo "[setup] warning: could not install chromium chromium-driver (tests/test_browser.py will skip):" >&2
      tail -n 5 "$log" >&2
    fi
  fi
  rm -f "$log"
}
if [ -f "$stamp" ]; then
  if [ "$browser" = 1 ]; then browser_q; fi
  exit 0
fi
echo "[setup] creating $VENV with $($PY --version)"
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
pip_q torch==2.14.1 torchvision==0.29.1
pip_q -e ".[test,workbook,peers]"
if [ "$browser" = 1 ]; then browser_q; fi
"$VENV/bin/python" -c "import torch, dictsr_core; print('[setup] torch', torch.__version__, 'cuda' if torch.cuda.is_available() else 'cpu')"
"$VENV/bin/python" -c "from dictsr_core.workbook.execute import ensure_kernel; print('[setup] jupyter kernel', ensure_kernel())"
"$VENV/bin/dictsr" weights --calibration --peers
rm -f "$VENV"/.dictsr-setup-*
touch "$stamp"
