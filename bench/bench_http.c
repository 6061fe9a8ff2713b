#include <stdio.h>

int main(void)
{
    puts("bench_http: not written yet");
    return 0;
}
