/* json.c - stub, to be written. */
#include "json.h"
