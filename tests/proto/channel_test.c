#include "unit.h"
#include "proto/channel.h"

int main(void)
{
    return unit_report("channel");
}
