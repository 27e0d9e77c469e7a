/*
 * cmds.h - the heaptap command's subcommands, one function each.
 *
 * Each takes the arguments after its name (argv[0] is the subcommand) and
 * returns the exit status: 0 nothing found, 1 a finding or a failure, 2 a
 * usage error or a file that cannot be read (after one "heaptap: " line).
 */
#ifndef HC_CMDS_H
#define HC_CMDS_H

int hc_cmd_run(int argc, char **argv);
int hc_cmd_dump(int argc, char **argv);
int hc_cmd_top(int argc, char **argv);
int hc_cmd_threads(int argc, char **argv);
int hc_cmd_diff(int argc, char **argv);
int hc_cmd_leaks(int argc, char **argv);
/* `heaptap report FILE... -o OUT.html` (report.c): one self-contained page. */
int hc_cmd_report(int argc, char **argv);

/* The analysis behind `heaptap leaks`, for the command and the report:
 * JSON to jout and/or text to tout (either may be NULL). Returns the exit
 * status (0 nothing found, 1 a finding per the fail_* choices). */
#include <stdbool.h>
#include <stdio.h>
struct hc_leaks_opts {
	double min_growth;
	int show;
	bool fail_leak, fail_threads, fail_retention;
};
int hc_leaks_run(char **files, size_t nfiles, const struct hc_leaks_opts *o, FILE *jout,
                 FILE *tout);

/* "4096", "64K", "16M", "1G" (binary units) -> bytes; 0 or -EINVAL. */
int hc_parse_size(const char *s, double *out);

#endif
