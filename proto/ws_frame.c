/* ws_frame.c - stub, to be written. */
#include "ws_frame.h"
