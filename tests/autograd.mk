# autograd.mk: programs of this fragment (one owner per file)
# in-place updates, optimizers and schedules (lead engineer's file)
check_PROGRAMS += tests/test_optim
tests_test_optim_SOURCES = tests/test_optim.c
tests_test_optim_LDADD = libsloth.la -lm
# gradients of every differentiable op against central finite differences, and the engine's contract
check_PROGRAMS += tests/test_grad
tests_test_grad_SOURCES = tests/test_grad.c
tests_test_grad_LDADD = libsloth.la -lm
