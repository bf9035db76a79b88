#!/usr/bin/env bash
# Every check a change must pass; `make test` and CI (.ci/run) call this after installing into $VENV.
# Prints a closing line "N passed, N failed" counting notebooks (nbdev-test) and pytest tests together, including
# step 7's second runs of the numeric checks on other CPU kernels; the sync checks (steps 1-3, together) and the lint
# (step 4: ruff, the import graph, the committed outputs) each add one failure when they fail.
set -uo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
BIN="$VENV/bin"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 MPLBACKEND=Agg PYTHONUNBUFFERED=1
log=$(mktemp -d)
junit_counts() {   # "passed failed" of a pytest --junitxml file (a missing or broken file: 0 passed, 1 failed)
  "$BIN/python" - "$1" <<'PY'
import sys, xml.etree.ElementTree as ET
try: r = ET.parse(sys.argv[1]).getroot()
except Exception: print(0, 1); raise SystemExit
s = r if r.tag == 'testsuite' else r.find('testsuite')
t, f, e, sk = (int(s.get(k, 0)) for k in ('tests', 'failures', 'errors', 'skipped'))
print(t - f - e - sk, f + e)
PY
}
fail_sync=0
fail_lint=0

echo "== 1. library in sync with notebooks (nbdev-export) =="
"$BIN/nbdev-export"
if [ -n "$(git status --porcelain -- sail_vl_nb)" ]; then
  echo "FAIL: nbdev-export changed sail_vl_nb/ — the committed library disagrees with nbs/:"; git status --porcelain -- sail_vl_nb; git diff --stat -- sail_vl_nb; fail_sync=1
else echo "ok"; fi

echo "== 2. notebooks clean (nbdev-clean) =="
"$BIN/nbdev-clean"
if [ -n "$(git status --porcelain -- nbs)" ]; then
  echo "FAIL: nbdev-clean changed nbs/ — commit notebooks clean:"; git status --porcelain -- nbs; fail_sync=1
else echo "ok"; fi

echo "== 3. README.md in sync with nbs/index.ipynb (tools/readme.py) =="
"$BIN/python" tools/readme.py --check || fail_sync=1

echo "== 4. lint: ruff check, pyflakes rules only (undefined names, unused imports and variables, redefinitions) =="
if [ -x "$BIN/ruff" ]; then
  "$BIN/ruff" check --select F sail_vl_nb tests benchmarks tools || { echo "FAIL: ruff found problems (the fixes to sail_vl_nb/ go into nbs/)"; fail_lint=1; }
else echo "FAIL: $BIN/ruff not found: install the dev extra (pip install -e '.[dev]')"; fail_lint=1; fi
echo "-- import graph: no module imports one from a later notebook (tools/import_graph.py) --"
"$BIN/python" tools/import_graph.py | tail -n 4 || { echo "FAIL: a back-edge in the import graph (run python tools/import_graph.py)"; fail_lint=1; }
echo "-- committed notebook outputs: only figures, tables and printed text, within the size caps (tools/outputs.py --check) --"
"$BIN/python" tools/outputs.py --check || { echo "FAIL: notebook outputs break the policy in CONTRIBUTING.md, \"Outputs\" (regenerate: make outputs)"; fail_lint=1; }

echo "== 5. notebooks (nbdev-test) =="
t0=$(date +%s)
"$BIN/nbdev-test" --do-print --timing --n-workers 2 > "$log/nbtest.out" 2> "$log/nbtest.err"
nb_rc=$?
cat "$log/nbtest.out"; tail -n 200 "$log/nbtest.err"
nb_total=$(grep -o 'Starting [^ ]*\.ipynb' "$log/nbtest.out" | wc -l)   # two workers may print on one line
nb_failed=$(awk '/Failed On The Following Notebooks/{f=1;next} f && /^\t/{n++} END{print n+0}' "$log/nbtest.err")
if [ "$nb_rc" != 0 ] && [ "$nb_failed" = 0 ]; then nb_failed=1; fi
nb_passed=$(( nb_total - nb_failed )); [ $nb_passed -lt 0 ] && nb_passed=0
echo "nbdev-test: $nb_passed notebooks passed, $nb_failed failed ($(( $(date +%s) - t0 )) s)"

echo "== 6. pytest tests/ =="
t0=$(date +%s)
"$BIN/python" -m pytest tests/ -q --durations=10 --junitxml="$log/junit.xml"
py_rc=$?
read py_passed py_failed < <(junit_counts "$log/junit.xml")
if [ "$py_rc" != 0 ] && [ "$py_rc" != 5 ] && [ "$py_failed" = 0 ]; then py_failed=1; fi
echo "pytest: $py_passed passed, $py_failed failed ($(( $(date +%s) - t0 )) s)"

echo "== 7. numeric checks again on other CPU kernels (CONTRIBUTING.md, \"Numeric tolerances\") =="
# The equivalence checks must hold on any CPU, not only on the kernels of this machine: run them again with torch,
# MKL and oneDNN limited to AVX2 (the `numeric` tests, and two notebooks whose checks have no test), then on torch's
# scalar kernels (the single-process `numeric` tests). Each counts in the closing line.
t0=$(date +%s); k_passed=0; k_failed=0
kernel_run() {   # kernel_run NAME "ENV=.. ENV=.." PYTEST_MARKERS [NOTEBOOK_RE]
  local name=$1 vars=$2 marks=$3 nbre=${4:-} p f rc
  echo "-- $name: $vars --"
  env $vars "$BIN/python" -c "import torch; print('torch CPU capability:', torch.backends.cpu.get_cpu_capability())"
  env $vars "$BIN/python" -m pytest tests/ -q -m "$marks" --junitxml="$log/junit-$name.xml"; rc=$?
  read p f < <(junit_counts "$log/junit-$name.xml")
  if [ "$rc" != 0 ] && [ "$rc" != 5 ] && [ "$f" = 0 ]; then f=1; fi
  k_passed=$(( k_passed + p )); k_failed=$(( k_failed + f ))
  if [ -n "$nbre" ]; then
    env $vars "$BIN/nbdev-test" --do-print --n-workers 2 --file-re "$nbre" > "$log/nb-$name.out" 2> "$log/nb-$name.err"; rc=$?
    cat "$log/nb-$name.out"; tail -n 60 "$log/nb-$name.err"
    p=$(grep -o 'Starting [^ ]*\.ipynb' "$log/nb-$name.out" | wc -l)
    f=$(awk '/Failed On The Following Notebooks/{f=1;next} f && /^\t/{n++} END{print n+0}' "$log/nb-$name.err")
    if [ "$rc" != 0 ] && [ "$f" = 0 ]; then f=1; fi
    k_passed=$(( k_passed + p - f )); k_failed=$(( k_failed + f ))
  fi
}
kernel_run avx2 "ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 ONEDNN_MAX_CPU_ISA=AVX2" numeric \
  '^(00b_numerics|07_data)\.ipynb$'
kernel_run scalar "ATEN_CPU_CAPABILITY=default MKL_ENABLE_INSTRUCTIONS=SSE4_2 ONEDNN_MAX_CPU_ISA=SSE41" "numeric and not torchrun"
echo "other kernels: $k_passed passed, $k_failed failed ($(( $(date +%s) - t0 )) s)"

passed=$(( nb_passed + py_passed + k_passed )); failed=$(( nb_failed + py_failed + k_failed + fail_sync + fail_lint ))
echo
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
