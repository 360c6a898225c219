#!/bin/sh
# Installs what Sloth needs to build, test and run on Debian 12 (as root).
set -e
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends \
  build-essential autoconf automake libtool pkgconf xxd \
  ocl-icd-opencl-dev opencl-headers pocl-opencl-icd clinfo \
  libclblast-dev libxxhash-dev libopenblas-dev libjansson-dev zlib1g-dev \
  dataset-fashion-mnist
