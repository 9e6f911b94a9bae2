/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Parsing and printing the values of configuration keys (vcpuspreadd.conf(5)
 * "VALUES"), also used by vcpuspreadctl for its arguments. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define USEC_PER_MSEC UINT64_C(1000)
#define USEC_PER_SEC UINT64_C(1000000)

/* Value parsers, exported for tests and for vcpuspreadctl's arguments.
 * Return 0 or -EINVAL (-ERANGE on overflow for durations). */
int config_parse_duration(const char *s, uint64_t *usec);
int config_parse_boolean(const char *s, bool *b);
/* Shortest form that parses back: "1s", "500ms", "1min 30s", "0". */
char *config_format_duration(uint64_t usec);
/* A plain non-negative decimal ("0.25") or a percentage ("25%"); no sign,
 * exponent, hex, inf or nan.  Returns 0 or -EINVAL. */
int config_parse_fraction(const char *s, double *out);
/* The shortest decimal that strtod() reads back as exactly @v. */
void config_format_double(char *buf, size_t len, double v);
