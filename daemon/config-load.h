/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The configuration files: lib/config.c parses text, this reads the files. */

#include "build-config.h"
#include "lib/config.h"

#define CONFIG_MAIN_PATH_DEFAULT SYSCONFDIR "/" DEFAULT_CONFIG_SUBPATH

/*
 * Built-in defaults, then @main_path (NULL = CONFIG_MAIN_PATH_DEFAULT; a missing main
 * file is not an error), then the *.conf files in @dropin_dir (NULL =
 * DEFAULT_CONFIG_DROPIN_DIRNAME next to the main file; may be missing) in
 * lexical order.  On success *@out holds the result (release with
 * config_done()); on failure returns a negative errno, fills @err and leaves
 * *@out untouched, so a reload can keep the old configuration.
 */
int config_load(const char *main_path, const char *dropin_dir, struct config *out,
                struct config_error *err);
