/* roff: text for the man pages the tables write (settings, ocpmctl's commands). */
#ifndef OCPM_ROFF_H
#define OCPM_ROFF_H

#include <stdio.h>

/* s as roff text: a backslash as \e, every '-' as \- (a minus, not a hyphen: options stay
 * copyable), and \& before a leading '.' or '\'' so that no line of it is read as a request. */
void roff_text(FILE *f, const char *s);

#endif
