/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* A guest's live domain XML, as libvirt would hand it over. */
#include "domain-xml.h"
#include "fuzz.h"
#include "macro.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        _cleanup_free_ char *xml = fuzz_string(data, size);
        struct lv_domain d = {};
        char err[256];

        if (lv_domain_parse_xml(xml, &d, err, sizeof(err)) == 0)
                lv_domain_done(&d);
        return 0;
}
