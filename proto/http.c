/* http.c - stub, to be written. */
#include "http.h"
