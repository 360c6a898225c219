/* autograd.c */
#include "internal.h"
