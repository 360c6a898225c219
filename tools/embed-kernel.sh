#!/bin/sh
# embed-kernel.sh IN.cl OUT.h NAME - writes IN as a C char array NAME (NUL
# terminated) into OUT, so kernel sources under kernels/ ship inside the
# library. Uses only od and sed.
set -e
in=$1 out=$2 name=$3
{
  echo "/* generated from $(basename "$in") by tools/embed-kernel.sh: do not edit */"
  echo "static const char $name[] = {"
  od -An -v -tx1 "$in" | sed 's/\([0-9a-f][0-9a-f]\)/0x\1,/g'
  echo '0};'
} > "$out-t"
mv "$out-t" "$out"
