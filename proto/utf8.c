/* utf8.c - stub, to be written. */
#include "utf8.h"
