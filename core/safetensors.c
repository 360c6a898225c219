/* safetensors.c */
#include "internal.h"
