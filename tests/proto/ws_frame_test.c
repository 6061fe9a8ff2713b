#include "unit.h"
#include "proto/ws_frame.h"

int main(void)
{
    return unit_report("ws_frame");
}
