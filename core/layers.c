/* layers.c */
#include "internal.h"
