#!/bin/sh
# vectorization.sh - tells which elementwise ops keep a fused kernel vectorized
# on a POCL CPU device. Each case runs bench/probe_ops with an empty POCL
# cache, then counts in the kernel POCL compiled (the .so it leaves in that
# cache): instructions on 256-bit registers (ymm) and call instructions.
# A vectorized kernel has many ymm instructions; a scalar one has none and
# calls builtins such as _cl_sinf once per element.
#
# Usage: bench/vectorization.sh [BUILDDIR]   (prints "vec_CASE_ymm N instructions")
#        CASES="log sin,mul" bench/vectorization.sh   (comma joins ops of one kernel)
builddir=${1:-.}
probe=$builddir/bench/probe_ops
test -x "$probe" || { echo "vectorization.sh: build $probe first (make)" >&2; exit 1; }
command -v objdump >/dev/null || { echo "vectorization.sh: objdump not found (binutils)" >&2; exit 77; }
cases=${CASES:-"add mul maximum abs neg exp log sqrt rsqrt sin cos tanh sigmoid relu floor ceil round reciprocal sign div pow minimum gelu gelu_tanh silu mul,add,sub,maximum,abs,neg sin,mul,exp,add,log,cos,tanh,mul"}
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
rc=0
for c in $cases; do
  ops=$(echo "$c" | tr ',' ' ')
  name=$(echo "$c" | tr ',' '_')
  dir=$tmp/$name
  mkdir -p "$dir"
  # shellcheck disable=SC2086
  if ! POCL_CACHE_DIR=$dir SLOTH_DEVICE=${SLOTH_DEVICE:-} "$probe" $ops >"$dir.log" 2>&1; then
    echo "vectorization.sh: probe_ops $ops failed:" >&2
    cat "$dir.log" >&2
    rc=1
    continue
  fi
  so=$(find "$dir" -name '*.so' | head -n 1)
  if [ -z "$so" ]; then
    echo "vectorization.sh: no compiled kernel under $dir (not a POCL device?)" >&2
    exit 77
  fi
  ymm=$(objdump -d "$so" | grep -c ymm)
  calls=$(objdump -d "$so" | grep -cE '[[:space:]]call')
  echo "vec_${name}_ymm $ymm instructions"
  echo "vec_${name}_calls $calls instructions"
done
exit $rc
