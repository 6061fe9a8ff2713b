/* envelope.c - stub, to be written. */
#include "envelope.h"
