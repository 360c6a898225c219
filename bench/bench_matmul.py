#!/usr/bin/python3
"""bench_matmul.py - numpy's float32 matmul on this machine, the reference
for sloth_matmul (bench/matmul.sh runs both and prints the ratios).

    matmul_numpy_gflops_nN   2 n^3 / median time of a @ b (float32, n x n)

numpy lives in Debian's /usr/bin/python3 (apt-get install python3-numpy).
Debian's numpy calls libblas.so.3, which is the slow reference BLAS unless
an optimized one is installed (apt-get install libopenblas0-pthread): the
script says which library the process actually mapped.

    matmul_sloth_vs_numpy_alt_nN   with SLOTH_LIB=path/to/libsloth.so: numpy's
                                   a @ b and sloth_matmul (through ctypes,
                                   same process, same OpenBLAS) timed
                                   alternately, ratio of the medians: on a busy
                                   machine this holds where separate runs drift

Env: BENCH_SIZES (default "256 512 1024 2048"), BENCH_SECONDS (default 1.5
per size; at least 5 and at most 50 timed calls after 2 warm-ups), SLOTH_LIB.
"""
import ctypes
import os
import sys
import time

try:
    import numpy as np
except ImportError:
    print("# numpy not found in %s: apt-get install python3-numpy libopenblas0-pthread (bench only)" % sys.executable)
    sys.exit(0)


def blas_libraries():
    """The BLAS/LAPACK shared objects mapped into this process."""
    libs = set()
    with open("/proc/self/maps") as f:
        for line in f:
            path = line.split()[-1] if len(line.split()) >= 6 else ""
            base = os.path.basename(path)
            if "blas" in base or "lapack" in base or "mkl" in base:
                libs.add(os.path.realpath(path))
    return sorted(libs)


def median(v):
    v = sorted(v)
    k = len(v)
    return v[k // 2] if k % 2 else 0.5 * (v[k // 2 - 1] + v[k // 2])


def median_times(fns, budget):
    """Medians of each function's times, the functions called in turn."""
    for _ in range(2):
        for fn in fns:
            fn()
    times, start = [[] for _ in fns], time.perf_counter()
    while len(times[0]) < 50 and (len(times[0]) < 5 or time.perf_counter() - start < budget * len(fns)):
        for fn, t in zip(fns, times):
            t0 = time.perf_counter()
            fn()
            t.append(time.perf_counter() - t0)
    return [median(t) for t in times]


class Sloth:
    """The few calls of libsloth the comparison needs, through ctypes."""

    def __init__(self, path):
        lib = self.lib = ctypes.CDLL(path)
        lib.sloth_from_host.restype = ctypes.c_void_p
        lib.sloth_from_host.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.POINTER(ctypes.c_int64)]
        lib.sloth_matmul.restype = ctypes.c_void_p
        lib.sloth_matmul.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        lib.sloth_sync.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_int]
        lib.sloth_release.argtypes = [ctypes.c_void_p]
        lib.sloth_last_error.restype = ctypes.c_char_p
        if lib.sloth_init(None) != 0:
            raise RuntimeError(lib.sloth_last_error().decode())

    def upload(self, a):
        shape = (ctypes.c_int64 * 2)(*a.shape)
        t = self.lib.sloth_from_host(a.ctypes.data, 0, 2, shape)  # SLOTH_F32 = 0
        if not t:
            raise RuntimeError(self.lib.sloth_last_error().decode())
        return t

    def matmul(self, a, b):
        c = ctypes.c_void_p(self.lib.sloth_matmul(a, b))
        if not c or self.lib.sloth_sync(ctypes.byref(c), 1) != 0 or self.lib.sloth_wait() != 0:
            raise RuntimeError(self.lib.sloth_last_error().decode())
        self.lib.sloth_release(c)


def main():
    sizes = [int(s) for s in os.environ.get("BENCH_SIZES", "256 512 1024 2048").replace(",", " ").split()]
    budget = float(os.environ.get("BENCH_SECONDS", "1.5") or 1.5)
    rng = np.random.default_rng(12345)
    np.ones((64, 64), np.float32) @ np.ones((64, 64), np.float32)  # loads the BLAS
    libs = blas_libraries()
    kind = "OpenBLAS" if any("openblas" in p for p in libs) else ("MKL" if any("mkl" in p for p in libs) else
                                                                  "reference BLAS (slow)" if libs else "unknown")
    print("# numpy %s, BLAS in use: %s (%s)" % (np.__version__, kind, ", ".join(libs) or "no blas library mapped"))
    if kind.startswith("reference"):
        print("# numpy uses the reference BLAS: apt-get install libopenblas0-pthread for OpenBLAS")
    print("# OPENBLAS_NUM_THREADS=%s" % os.environ.get("OPENBLAS_NUM_THREADS", "(unset)"))
    sloth = None
    if os.environ.get("SLOTH_LIB"):
        sloth = Sloth(os.environ["SLOTH_LIB"])
        print("# and sloth_matmul through %s, timed alternately with numpy" % os.environ["SLOTH_LIB"])
    for n in sizes:
        a = rng.random((n, n), dtype=np.float32) - 0.5
        b = rng.random((n, n), dtype=np.float32) - 0.5
        c = np.empty((n, n), np.float32)
        if sloth:
            sa, sb = sloth.upload(a), sloth.upload(b)
            t, ts = median_times([lambda: np.matmul(a, b, out=c), lambda: sloth.matmul(sa, sb)], budget)
            sloth.lib.sloth_release(ctypes.c_void_p(sa))
            sloth.lib.sloth_release(ctypes.c_void_p(sb))
        else:
            t, = median_times([lambda: np.matmul(a, b, out=c)], budget)
        print("matmul_numpy_gflops_n%d %.3g GFLOP/s" % (n, 2.0 * n ** 3 / t * 1e-9))
        if sloth:
            print("matmul_sloth_alt_gflops_n%d %.3g GFLOP/s" % (n, 2.0 * n ** 3 / ts * 1e-9))
            print("matmul_sloth_vs_numpy_alt_n%d %.3g ratio" % (n, t / ts))
        sys.stdout.flush()


if __name__ == "__main__":
    main()
