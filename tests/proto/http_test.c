#include "unit.h"
#include "proto/http.h"

int main(void)
{
    return unit_report("http");
}
