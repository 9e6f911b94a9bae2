/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The configuration parser, then matching and printing of what it accepted. */
#include "config.h"
#include "fuzz.h"
#include "macro.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        _cleanup_free_ char *text = fuzz_string(data, size);
        struct config c;
        struct config_error err = {};

        if (config_init(&c) < 0)
                return 0;
        if (config_parse_string(&c, text, "fuzz.conf", &err) == 0) {
                (void)config_match_domain(&c, "web1", "0b7d4a3e-5f1c-4c2a-9e8b-3f6d2a1c0e9f");
                free(config_format(&c));
        }
        config_done(&c);
        return 0;
}
