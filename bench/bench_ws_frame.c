#include <stdio.h>

int main(void)
{
    puts("bench_ws_frame: not written yet");
    return 0;
}
