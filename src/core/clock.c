#define _GNU_SOURCE
#include "clock.h"

#include <stddef.h>
#include <sys/time.h>

double clock_now(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (double)tv.tv_sec + tv.tv_usec / 1e6;
}
