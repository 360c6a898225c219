#!/bin/sh
# tests/test_matmul through the CLBlast path: on CPU devices `make check` runs
# test_matmul itself on the host BLAS path (SLOTH_GEMM=auto picks it).
SLOTH_GEMM=clblast exec ./tests/test_matmul "$@"
