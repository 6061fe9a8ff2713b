/* channel.c - stub, to be written. */
#include "channel.h"
