#!/usr/bin/env bash
# AddressSanitizer + UndefinedBehaviorSanitizer run of the native-heavy tests.
#
# usage (repo root, with a venv that has llmrec's dependencies active, e.g. .venv-ci):
#   bash tests/sanitize.sh [FUZZ_SECONDS]        (default 60; 0 skips the fuzz pass)
#   SANITIZE_SKIP_TESTS=1 bash tests/sanitize.sh 1800      (a long sanitized fuzz run only;
#   FUZZ_ARGS="--avoid nonaligned" passes options to python -m fuzz)
#
# Builds the extension with -DLLMREC_SANITIZE=ON into its own build dir and a throwaway
# venv (build/sanitize/), so the normal install is never touched, then runs the tests
# that exercise native code without torch (torch's own runtime does not like ASan) and a
# short run of the fuzz harness, with GCC's libasan preloaded into the uninstrumented
# Python. Exits non-zero on a test failure or on the first sanitizer report.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
fuzz_seconds=${1:-60}
work=$root/build/sanitize
venv=$work/venv
python=${PYTHON:-python}

if ! command -v "$python" >/dev/null; then python=python3; fi
# Every site-packages directory the active Python sees (venvs may chain them with .pth files).
deps=$("$python" -c 'import sys; print("\n".join(p for p in sys.path if p.endswith("-packages")))')
"$python" -c 'import numpy, scipy, pandas, pytest' \
  || { echo "sanitize.sh: activate a venv with llmrec's dependencies (numpy scipy pandas pytest)"; exit 2; }

# A throwaway venv that sees the active environment's packages through a .pth file; its own
# site-packages comes first on sys.path, so its sanitized llmrec shadows any other install.
if [[ ! -x $venv/bin/python ]]; then
  "$python" -m venv "$venv"
fi
site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
echo "$deps" > "$site/_llmrec_deps.pth"

build_args=(-Ccmake.define.LLMREC_SANITIZE=ON -Ccmake.build-type=RelWithDebInfo
            "-Cbuild-dir=$work/cmake")
if "$venv/bin/python" -c 'import scikit_build_core, pybind11' 2>/dev/null; then
  build_args+=(--no-build-isolation)
fi
start=$(date +%s)
"$venv/bin/python" -m pip install -q --no-deps --force-reinstall "${build_args[@]}" "$root"
echo "sanitize.sh: built in $(( $(date +%s) - start )) s"

libasan=$(${CXX:-g++} -print-file-name=libasan.so)
[[ -f $libasan ]] || { echo "sanitize.sh: libasan not found ($libasan)"; exit 2; }
# libstdc++ must be loaded with libasan: Python does not link it, and without it ASan's
# __cxa_throw interceptor finds no real function and aborts on the first C++ throw.
libstdcxx=$(${CXX:-g++} -print-file-name=libstdc++.so)
export LD_PRELOAD="$libasan $libstdcxx"
# Python's allocator keeps memory by design: no leak reports. abort_on_error makes a report
# a signal, so the test runner and the fuzz driver see it as a crash.
# Reports go to files too (pytest captures stderr of a test that then aborts).
logs=$work/reports
rm -rf "$logs"; mkdir -p "$logs"
# Allocations over 4 GiB fail (MemoryError) instead of swapping the machine to death.
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:allocator_may_return_null=1:max_allocation_size_mb=4096:hard_rss_limit_mb=8192:log_path=$logs/asan
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:abort_on_error=1:log_path=$logs/ubsan
show_reports() {
  local rc=$?
  if compgen -G "$logs/*" >/dev/null; then
    echo "sanitize.sh: sanitizer reports:"; head -c 20000 "$logs"/*
    rc=1
  fi
  exit $rc
}
trap show_reports EXIT
export PYTHONMALLOC=malloc

cd "$work"   # import llmrec from the sanitized venv, not from python/ in the checkout
"$venv/bin/python" - <<'EOF'
import llmrec, llmrec._core as c, subprocess
print("sanitize.sh: llmrec from", llmrec.__file__)
libs = subprocess.run(["ldd", c.__file__], capture_output=True, text=True).stdout
assert "libasan" in libs and "build/sanitize/venv" in c.__file__, (c.__file__, libs)
EOF

tests=(test_exact_index.py test_quantized.py test_quantized_partitions.py test_quantized_pq4.py
       test_als.py test_als_native.py test_rescore.py test_diversity.py test_runtime.py
       test_arrays.py test_index_files.py test_index_maintenance.py test_catalogue.py
       # regression tests of issue 13 (each is skipped here if absent)
       test_core_hostile.py test_native_regressions.py test_file_hostile.py test_wrong_answers.py
       test_fuzz_known.py test_batch_invariance.py)
paths=()
for t in "${tests[@]}"; do [[ -f $root/tests/$t ]] && paths+=("$root/tests/$t"); done
start=$(date +%s)
[[ ${SANITIZE_SKIP_TESTS:-0} == 1 ]] || \
"$venv/bin/python" -m pytest -q -p no:cacheprovider -p no:faulthandler --rootdir="$root" "${paths[@]}"
echo "sanitize.sh: tests took $(( $(date +%s) - start )) s"

if [[ $fuzz_seconds -gt 0 ]]; then
  start=$(date +%s)
  # Reports to stderr here: the fuzz driver keeps them in each finding's reproducer.
  ASAN_OPTIONS=${ASAN_OPTIONS%:log_path=*} UBSAN_OPTIONS=${UBSAN_OPTIONS%:log_path=*} \
  PYTHONPATH=$root "$venv/bin/python" -m fuzz --seconds "$fuzz_seconds" \
    --out "$work/fuzz-findings" ${FUZZ_ARGS:-}
  echo "sanitize.sh: fuzz took $(( $(date +%s) - start )) s"
fi
