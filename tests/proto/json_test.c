#include "unit.h"
#include "proto/json.h"

int main(void)
{
    return unit_report("json");
}
