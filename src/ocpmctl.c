/* ocpmctl: the operator's command line for ocpm (ctl.h; ocpmctl(8)). Only this file decides to exit. */
#define _GNU_SOURCE
#include "ctl.h"

int main(int argc, char **argv) { return ctl_main(argc, argv); }
