/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The configuration keys (config-keys.c), internal to lib/config*.c: one row
 * per key over a handful of typed parsers, as systemd's config tables do.  A
 * row says where the value lives (an offset into struct config or struct
 * config_domain), its built-in default (lib/defaults.h), its bounds and, where
 * the generic message would not do, the whole "expected ..." text.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

struct config_key;
typedef int (*key_parse_fn)(const struct config_key *k, void *base, const char *v, char *w, size_t wlen);
typedef char *(*key_format_fn)(const struct config_key *k, const void *base);

struct config_key {
        const char *name;
        const char *default_value;      /* also what an empty assignment resets to */
        key_parse_fn parse;
        key_format_fn format;
        size_t offset;                  /* the value in struct config / struct config_domain */
        size_t origin_offset;           /* its struct config_origin; 0: none (never a first member) */
        size_t set_offset;              /* a bool saying it was given; 0: none */
        bool empty_unsets;              /* "Key=" means "not set", not "the default" */
        uint64_t min, max;              /* durations (usec) and numbers */
        const char *zero_word;          /* numbers: the word that stands for 0 */
        const char *what;               /* numbers: what is counted */
        const char *hint;               /* the whole reason when a value is rejected */
};

extern const struct config_key config_daemon_keys[];
extern const size_t config_n_daemon_keys;
extern const struct config_key config_domain_keys[];
extern const size_t config_n_domain_keys;

/* Set @k in @base (struct config or struct config_domain) from @value: ""
 * means the default, or "not set" for keys with empty_unsets.  @o is where
 * the setting was made (NULL: built in).  Returns 0, -EINVAL with the reason
 * in @w, or -ENOMEM. */
int config_key_set(const struct config_key *k, void *base, const char *value, const struct config_origin *o,
                   char *w, size_t wlen);
/* The row named @name in @keys, or NULL. */
const struct config_key *config_key_find(const struct config_key *keys, size_t n, const char *name);
