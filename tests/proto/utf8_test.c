#include "unit.h"
#include "proto/utf8.h"

int main(void)
{
    return unit_report("utf8");
}
