/* clock: the time, as every module reads it. */
#ifndef OCPM_CLOCK_H
#define OCPM_CLOCK_H

/* Wall clock as unix seconds with sub-second precision (what the database and the API show). */
double clock_now(void);

#endif
