#!/bin/sh
# train.sh - the training step of the MLP and the CNN of examples/fashion-mnist
# in Sloth (bench_train) and in PyTorch CPU eager and torch._lazy
# (bench_train.py), in one go: BENCH_ROUNDS rounds (default 3) that alternate
# the two programs, so that both see the same machine; each program prints
# the median of its own runs, and this script the median over the rounds and
# the ratios with the targets:
#   train_<model>_sloth_vs_eager  sloth / eager step time, target <= 1.0
#   train_<model>_lazy_vs_sloth   lazy / sloth step time,  target >= 3.0
#
# usage: bench/train.sh [path/to/bench_train] [path/to/bench_train.py] [mlp|cnn|all]
# (`make bench-train` passes the first two). BENCH_PYTHON picks the
# interpreter (default /usr/bin/python3: Debian's torch lives there);
# BENCH_THREADS the torch thread count (default: every core, as POCL uses);
# BENCH_REPS, BENCH_STEPS and BENCH_CNN_CHANNELS go to both programs.
# torch is optional: apt-get install python3-torch libopenblas0-pthread
# (bench only); without it the PyTorch part is skipped.
here=$(dirname "$0")
bin=${1:-./bench/bench_train}
py=${2:-$here/bench_train.py}
which=${3:-all}
python=${BENCH_PYTHON:-/usr/bin/python3}
rounds=${BENCH_ROUNDS:-3}
out=$(mktemp "${TMPDIR:-/tmp}/bench_train.XXXXXX") || exit 1
trap 'rm -f "$out"' EXIT

have_torch=0
if [ -x "$python" ] && "$python" -c 'import torch' 2>/dev/null; then have_torch=1; else
  echo "# torch not found for $python: apt-get install python3-torch libopenblas0-pthread (bench only); PyTorch skipped"
fi
load=$(cut -d' ' -f1 /proc/loadavg 2>/dev/null)
echo "# load average before the run: ${load:-?} ($(nproc 2>/dev/null || echo ?) cores); figures are noisy on a busy machine"
r=1
while [ "$r" -le "$rounds" ]; do
  echo "# round $r of $rounds"
  "$bin" "$which" | tee -a "$out" || exit 1
  if [ "$have_torch" = 1 ]; then "$python" "$py" "$which" | tee -a "$out" || exit 1; fi
  r=$((r + 1))
done

echo "# medians over $rounds rounds"
awk '
  function median(list,   n, a, i, j, t) {
    n = split(list, a, " ")
    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
  }
  $1 ~ /^train_step_.*_ms$/ { v[$1] = v[$1] " " $2; if (!($1 in seen)) { seen[$1] = 1; order[++k] = $1 } }
  $1 ~ /^train_step_.*_recompiles$/ && $2 + 0 > 0 { recompiles++ }
  END {
    for (i = 1; i <= k; i++) { m[order[i]] = median(v[order[i]]); printf "%s %.3g ms (median of:%s)\n", order[i], m[order[i]], v[order[i]] }
    miss = 0
    split("mlp cnn", models, " ")
    for (j = 1; j <= 2; j++) {
      s = m["train_step_" models[j] "_sloth_ms"]; e = m["train_step_" models[j] "_eager_ms"]; l = m["train_step_" models[j] "_lazy_ms"]
      if (s == "") continue
      if (e != "" && e > 0) {
        printf "train_%s_sloth_vs_eager %.3g ratio (target <= 1.0)\n", models[j], s / e
        if (s / e > 1.0) { printf "# target missed: %s sloth/eager %.3g > 1.0\n", models[j], s / e; miss++ }
      }
      if (l != "" && s > 0) {
        printf "train_%s_lazy_vs_sloth %.3g ratio (target >= 3.0)\n", models[j], l / s
        if (l / s < 3.0) { printf "# target missed: %s lazy/sloth %.3g < 3.0\n", models[j], l / s; miss++ }
      }
    }
    if (recompiles) { printf "# target missed: sloth steps after warm-up built plans or compiled kernels (%d runs)\n", recompiles; miss++ }
    printf "# targets: %d missed\n", miss
  }' "$out"
