# fashion-mnist.mk: programs of this fragment (one owner per file)
#
# examples/fashion-mnist trains an MLP or a CNN on Fashion-MNIST (the IDX
# files of Debian's dataset-fashion-mnist, read with zlib; examples/idx.h).
# Built by `make`, never run by `make check` (minutes): run
#   ./examples/fashion-mnist --model mlp     (--help lists the options)
noinst_PROGRAMS += examples/fashion-mnist
examples_fashion_mnist_SOURCES = examples/fashion-mnist.c
noinst_HEADERS += examples/idx.h
examples_fashion_mnist_CFLAGS = $(AM_CFLAGS) $(ZLIB_CFLAGS)
examples_fashion_mnist_LDADD = libsloth.la $(ZLIB_LIBS) -lm
