/* error.c - per-thread last error and status strings. */
#include "internal.h"

#include <stdio.h>
#include <string.h>

static _Thread_local char last_message[65536];
static _Thread_local sloth_status last_status = SLOTH_OK;

sloth_status sloth__fail(sloth_status s, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(last_message, sizeof last_message, fmt, ap);
  va_end(ap);
  last_status = s;
  return s;
}

void sloth__clear_error(void) {
  last_message[0] = '\0';
  last_status = SLOTH_OK;
}

const char *sloth_last_error(void) { return last_message; }
sloth_status sloth_last_status(void) { return last_status; }

const char *sloth_status_string(sloth_status s) {
  switch (s) {
  case SLOTH_OK: return "ok";
  case SLOTH_E_INVALID: return "invalid argument";
  case SLOTH_E_SHAPE: return "shape mismatch";
  case SLOTH_E_DTYPE: return "dtype not allowed";
  case SLOTH_E_DEVICE: return "device error";
  case SLOTH_E_NOMEM: return "out of memory";
  case SLOTH_E_COMPILE: return "kernel compile error";
  case SLOTH_E_UNSUPPORTED: return "unsupported on this device";
  }
  return "unknown status";
}

void sloth_clear_error(void) { sloth__clear_error(); }
