#!/bin/sh
# matmul.sh - sloth_matmul against a direct CLBlast call (bench_matmul)
# and against numpy on the same machine (bench_matmul.py), in one run, then
# the ratios and the targets:
#   matmul_sloth_vs_clblast_nN >= 0.95 at every size
#   matmul_sloth_vs_numpy_nN   >= 0.80 from n = 512 on (CPU devices)
# matmul_sloth_vs_numpy_alt_nN comes from numpy and sloth_matmul timed
# alternately in one process (ctypes; SLOTH_LIB, default the build's
# .libs/libsloth.so): the steadier figure when the machine is busy.
#
# usage: bench/matmul.sh [path/to/bench_matmul] [path/to/bench_matmul.py]
# (`make bench-matmul` passes both). BENCH_PYTHON picks the interpreter
# (default /usr/bin/python3: Debian's numpy lives there, not in the python3
# first on PATH). numpy is optional: apt-get install python3-numpy
# libopenblas0-pthread (bench only); without it the numpy part is skipped.
here=$(dirname "$0")
bin=${1:-./bench/bench_matmul}
py=${2:-$here/bench_matmul.py}
python=${BENCH_PYTHON:-/usr/bin/python3}
out=$(mktemp "${TMPDIR:-/tmp}/bench_matmul.XXXXXX") || exit 1
trap 'rm -f "$out"' EXIT

load=$(cut -d' ' -f1 /proc/loadavg 2>/dev/null)
echo "# load average before the run: ${load:-?} ($(nproc 2>/dev/null || echo ?) cores); figures are noisy on a busy machine"
"$bin" | tee "$out" || exit 1
if [ -x "$python" ] && "$python" -c 'import numpy' 2>/dev/null; then
  # the script also times sloth_matmul through ctypes, alternately with numpy
  lib=$(dirname "$bin")/../.libs/libsloth.so
  if [ -z "${SLOTH_LIB:-}" ] && [ -f "$lib" ]; then SLOTH_LIB=$lib; export SLOTH_LIB; fi
  "$python" "$py" | tee -a "$out" || exit 1
else
  echo "# numpy not found for $python: apt-get install python3-numpy libopenblas0-pthread (bench only); numpy skipped"
fi

awk '
  $1 ~ /^matmul_sloth_gflops_n/    { n = substr($1, 22); s[n] = $2; order[++k] = n }
  $1 ~ /^matmul_numpy_gflops_n/    { n = substr($1, 22); np[n] = $2 }
  $1 ~ /^matmul_sloth_vs_clblast_n/ { n = substr($1, 26); vc[n] = $2 }
  $1 ~ /^matmul_sloth_vs_numpy_alt_n/ { n = substr($1, 28); if (n + 0 >= 512 && $2 < 0.80) {
      printf "# target missed: sloth/numpy at n=%s is %.3g < 0.80 (alternate runs)\n", n, $2; alt_miss++ } }
  END {
    miss = 0
    for (i = 1; i <= k; i++) {
      n = order[i]
      if (n in np && np[n] > 0) {
        r = s[n] / np[n]
        printf "matmul_sloth_vs_numpy_n%s %.3g ratio\n", n, r
        if (n + 0 >= 512 && r < 0.80) { printf "# target missed: sloth/numpy at n=%s is %.3g < 0.80 (separate runs)\n", n, r; miss++ }
      }
      if (n in vc && vc[n] < 0.95) { printf "# target missed: sloth/CLBlast at n=%s is %.3g < 0.95\n", n, vc[n]; miss++ }
    }
    printf "# targets: %d missed\n", miss + alt_miss
  }' "$out"
