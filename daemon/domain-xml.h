/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* A running domain as the daemon sees it, read from its live XML. */

#include <stdbool.h>
#include <stddef.h>
#include <hwloc.h>

struct lv_domain {
        char uuid[37];
        char *name;                     /* as libvirt has it: any bytes but NUL; owned */
        int id;                         /* libvirt's running id; -1 if the XML has none */
        unsigned n_vcpus;               /* vCPUs online now */
        unsigned max_vcpus;
        /* <domain type='kvm'>: its vCPUs have KVM's counters (kvm-stats.h);
         * 'qemu' (TCG) and anything else have none. */
        bool kvm;
        /* The operator pins this guest in its live XML: any <cputune><vcpupin>,
         * or <vcpu placement='auto'> (numad).  <emulatorpin> and <iothreadpin>
         * alone do not count: they leave the vCPUs free. */
        bool operator_pinned;
        char *operator_reason;          /* e.g. "<vcpupin vcpu='0'> in the live XML"; owned, NULL if not */
        /* <vcpu cpuset='...'> (libvirt syntax, "0-3,^2" excludes 2): the guest
         * may only use these; NULL if none. */
        hwloc_bitmap_t restriction;     /* owned */
};

void lv_domain_done(struct lv_domain *d);
/* lv_domain_done() on each of @n and free the array. */
void lv_domains_free(struct lv_domain *d, size_t n);

/* Parse a live domain XML document.  -EINVAL with a one-line reason in @err
 * when it is not a usable <domain>; -ENOMEM. */
int lv_domain_parse_xml(const char *xml, struct lv_domain *out, char *err, size_t errlen);
