#!/bin/bash
# The whole GPU check in one call on the lent GPU machine (../shared/gpu-test/README.md), from the
# project root, after the staged onnxruntime-gpu parts were stashed there:
#   bash bench/gpu_session.sh
# Installs onnxruntime-gpu and the carried wheels (.whl/: lam-trt itself, pypng) into /tmp/site,
# runs bench/gpu_check.py ($GPU_CHECK_ARGS added) and the GPU tests, and leaves every log and
# result in $OUT; /tmp/site stays installed for further commands (PYTHONPATH=/tmp/site python3 -P).
set -uo pipefail
out=${OUT:-/tmp/gpu-out}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
source .device/on-gpu.sh install >"$out/install.log" 2>&1 || { cat "$out/install.log"; exit 1; }
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl >>"$out/install.log" 2>&1 \
  || { cat "$out/install.log"; exit 1; }
cat "$out/install.log"
nvidia-smi >"$out/nvidia-smi.txt" 2>&1
# -P: import the installed lam_trt (export/ and kernels/ live inside it), not ./lam_trt.
timeout "${GPU_CHECK_SECONDS:-330}" python3 -P bench/gpu_check.py --out "$out" --budget "${GPU_BUDGET:-230}" \
  ${GPU_CHECK_ARGS:-} 2>"$out/gpu_check.stderr"
echo "gpu_check exit $?"
per_test=$(python3 -c "import pytest_timeout" 2>/dev/null && echo "--timeout 90")
timeout "${GPU_TESTS_SECONDS:-120}" python3 -P -m pytest -p no:cacheprovider -q -rs $per_test \
  tests/test_gpu.py tests/test_cuda_path.py 2>&1 | tee "$out/pytest.log" | tail -25
echo "pytest exit ${PIPESTATUS[0]}"
tail -5 "$out/gpu_check.stderr"
