/* ocpm-doc: the generated parts of the documents, from the tables they describe (built, not
 * installed; scripts/gen-docs runs it).
 *
 *   ocpm-doc settings md|man|example   the settings table (conf_keys.c)
 *   ocpm-doc routes md                 the API's routes (api.c)
 *   ocpm-doc ctl usage|man             ocpmctl's commands and options (ctl.c) */
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>

#include "api.h"
#include "conf.h"
#include "ctl.h"

int main(int argc, char **argv)
{
    static const struct {
        const char *what;
        int (*write)(FILE *f, const char *format);
    } docs[] = {{"settings", conf_doc_write}, {"routes", api_doc_write}, {"ctl", ctl_doc_write}};
    for (size_t i = 0; argc == 3 && i < sizeof docs / sizeof docs[0]; i++)
        if (strcmp(argv[1], docs[i].what) == 0 && docs[i].write(stdout, argv[2]) == 0)
            return fflush(stdout) == 0 ? 0 : 1;
    fputs("usage: ocpm-doc settings md|man|example | routes md | ctl usage|man\n", stderr);
    return 2;
}
