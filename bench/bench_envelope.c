#include <stdio.h>

int main(void)
{
    puts("bench_envelope: not written yet");
    return 0;
}
