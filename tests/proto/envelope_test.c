#include "unit.h"
#include "proto/envelope.h"

int main(void)
{
    return unit_report("envelope");
}
