/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * One guest's record of virConnectGetAllDomainStats(VIR_DOMAIN_STATS_VCPU),
 * written as `virsh domstats --vcpu` prints it ("vcpu.0.halt_exits.sum=12"
 * lines).  libvirt sends typed parameters, not text: the text only chooses
 * the fields and the values, and the first byte of each value its type, so
 * field names, ids and types libvirt has not sent yet are tried too.  Two
 * readings (the input cut at a line "--") go through the tracker as two
 * fetches would.
 */
#include <stdbool.h>
#include <libvirt/libvirt.h>

#include "fuzz.h"
#include "kvm-stats.h"
#include "macro.h"

static void params_of(char *text, virTypedParameterPtr *p, int *n)
{
        int max = 0;

        *p = NULL;
        *n = 0;
        for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
                char *eq = strchr(line, '=');
                if (!eq || eq == line)
                        continue;
                *eq = '\0';
                const char *key = line, *val = eq + 1;
                /* A value's type: as recorded, or another one libvirt might send. */
                switch (*val) {
                case 'i': (void) virTypedParamsAddInt(p, n, &max, key, atoi(val + 1)); break;
                case 'l': (void) virTypedParamsAddLLong(p, n, &max, key, strtoll(val + 1, NULL, 10)); break;
                case 'b': (void) virTypedParamsAddBoolean(p, n, &max, key, val[1] == '1'); break;
                case 's': (void) virTypedParamsAddString(p, n, &max, key, val + 1); break;
                case 'd': (void) virTypedParamsAddDouble(p, n, &max, key, strtod(val + 1, NULL)); break;
                default: (void) virTypedParamsAddULLong(p, n, &max, key, strtoull(val, NULL, 10)); break;
                }
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        _cleanup_free_ char *text = fuzz_string(data, size);
        char *second = strstr(text, "\n--\n");
        struct kvm_vcpu_track track[4] = {};
        static bool initialized;

        /* The virTypedParams helpers use libvirt's per-thread error state. */
        if (!initialized && virInitialize() < 0)
                abort();
        initialized = true;
        if (second) {
                *second = '\0';
                second += 4;
        }
        char *readings[2] = { text, second };
        for (int i = 0; i < 2 && readings[i]; i++) {
                virTypedParameterPtr p;
                struct kvm_vcpu_stats *s;
                size_t n;
                int np;

                params_of(readings[i], &p, &np);
                if (kvm_stats_parse_alloc(p, np, 4096, &s, &n) == 0) {
                        for (size_t k = 0; k < n && k < ELEMENTSOF(track); k++)
                                (void) kvm_vcpu_track_update(&track[k], &s[k], (uint64_t)(i + 1) * 1000000000ULL);
                        free(s);
                }
                virTypedParamsFree(p, np);
        }
        return 0;
}
