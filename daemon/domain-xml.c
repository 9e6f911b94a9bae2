/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A running domain's live XML interpreted: the parts that decide whether the
 * daemon may touch the guest.  Pure text in, struct out: no connection, so
 * the unit tests feed it fixture documents.
 */
#include "domain-xml.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpulist.h"
#include "lib/util.h"
#include "macro.h"
#include "xml-util.h"

void lv_domain_done(struct lv_domain *d)
{
        if (!d)
                return;
        free(d->name);
        free(d->operator_reason);
        if (d->restriction)
                hwloc_bitmap_free(d->restriction);
        *d = (struct lv_domain){ .id = -1 };
}

void lv_domains_free(struct lv_domain *d, size_t n)
{
        for (size_t i = 0; d && i < n; i++)
                lv_domain_done(&d[i]);
        free(d);
}

static char *xml_prop(xmlNode *n, const char *name)
{
        return (char *)xmlGetProp(n, BAD_CAST name);
}

/* A whole decimal number 0..UINT_MAX, nothing else (surrounding blanks are
 * tolerated because XML text nodes may carry them). */
static int parse_uint(const char *s, unsigned *out)
{
        char buf[32];
        unsigned long v;
        size_t len;
        int r;

        s = strip_view(s, &len);
        if (len >= sizeof(buf))
                return len > 0 && isdigit((unsigned char)*s) ? -ERANGE : -EINVAL;
        memcpy(buf, s, len);
        buf[len] = '\0';
        r = parse_ulong(buf, UINT_MAX, &v);
        if (r < 0)
                return r;
        *out = (unsigned)v;
        return 0;
}

/*
 * libvirt's cpuset syntax: the kernel's list plus "^N" entries that take N
 * out again.  Entries apply left to right, as in libvirt's virBitmapParse, so
 * "0-3,^2" is 0,1,3.
 */
static int parse_libvirt_cpuset(const char *text, hwloc_bitmap_t out, char *err, size_t errlen)
{
        _cleanup_bitmap_ hwloc_bitmap_t entry = hwloc_bitmap_alloc();
        _cleanup_free_ char *copy = strdup(text);
        char sub[128] = "";
        char *save = NULL;
        int r;

        if (!entry || !copy)
                return -ENOMEM;
        hwloc_bitmap_zero(out);
        if (strspn(text, " \t\n") == strlen(text))
                return set_reason(err, errlen, -EINVAL, "cpuset '%s' is empty", text);
        if (text[0] == ',' || text[strlen(text) - 1] == ',' || strstr(text, ",,"))
                return set_reason(err, errlen, -EINVAL, "cpuset '%s' has an empty entry", text);

        for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
                while (isspace((unsigned char)*tok))
                        tok++;
                bool exclude = *tok == '^';
                if (exclude)
                        tok++;
                r = cpulist_parse(tok, entry, sub, sizeof(sub));
                if (r == 0 && hwloc_bitmap_iszero(entry))
                        r = set_reason(sub, sizeof(sub), -EINVAL, "empty entry");
                if (r < 0)
                        return set_reason(err, errlen, r, "cpuset '%s': %s", text, sub);
                if (exclude)
                        hwloc_bitmap_andnot(out, out, entry);
                else
                        hwloc_bitmap_or(out, out, entry);
        }
        if (hwloc_bitmap_iszero(out))
                return set_reason(err, errlen, -EINVAL, "cpuset '%s' leaves no CPU", text);
        return 0;
}

static int parse_vcpu(xmlNode *vcpu, struct lv_domain *d, char *err, size_t errlen)
{
        _cleanup_xml_ xmlChar *text = NULL;
        _cleanup_free_ char *current = NULL, *placement = NULL, *cpuset = NULL;
        int r;

        if (!vcpu)
                return set_reason(err, errlen, -EINVAL, "no <vcpu> element");
        text = xmlNodeGetContent(vcpu);
        if (!text || parse_uint((const char *)text, &d->max_vcpus) < 0 || d->max_vcpus == 0)
                return set_reason(err, errlen, -EINVAL, "<vcpu> count '%s' is not a positive number",
                            text ? (const char *)text : "");

        d->n_vcpus = d->max_vcpus;
        current = xml_prop(vcpu, "current");
        if (current && (parse_uint(current, &d->n_vcpus) < 0 || d->n_vcpus == 0 ||
                        d->n_vcpus > d->max_vcpus))
                return set_reason(err, errlen, -EINVAL, "<vcpu current='%s'> is not in 1..%u",
                            current, d->max_vcpus);

        placement = xml_prop(vcpu, "placement");
        if (placement && strcmp(placement, "auto") == 0) {
                d->operator_pinned = true;
                d->operator_reason = strdup("<vcpu placement='auto'> in the live XML");
                if (!d->operator_reason)
                        return -ENOMEM;
        }

        cpuset = xml_prop(vcpu, "cpuset");
        if (cpuset) {
                d->restriction = hwloc_bitmap_alloc();
                if (!d->restriction)
                        return -ENOMEM;
                r = parse_libvirt_cpuset(cpuset, d->restriction, err, errlen);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* Any <vcpupin> means the operator placed vCPUs; the first one is named in the
 * reason so a log line points at something the operator can find. */
static int parse_cputune(xmlNode *cputune, struct lv_domain *d)
{
        xmlNode *pin = xml_child(cputune, "vcpupin");
        _cleanup_free_ char *vcpu = NULL;
        char *reason = NULL;

        if (!pin)
                return 0;
        vcpu = xml_prop(pin, "vcpu");
        if (asprintf(&reason, "<vcpupin vcpu='%s'> in the live XML", vcpu ? vcpu : "?") < 0)
                return -ENOMEM;
        free(d->operator_reason);
        d->operator_reason = reason;
        d->operator_pinned = true;
        return 0;
}

static int parse_domain(xmlNode *root, struct lv_domain *d, char *err, size_t errlen)
{
        _cleanup_xml_ xmlChar *name = NULL, *uuid = NULL;
        _cleanup_free_ char *id = NULL, *type = NULL;
        unsigned idval;
        int r;

        if (!root || !xmlStrEqual(root->name, BAD_CAST "domain"))
                return set_reason(err, errlen, -EINVAL, "root element is <%s>, not <domain>",
                            root ? (const char *)root->name : "");

        type = xml_prop(root, "type");
        d->kvm = type && strcmp(type, "kvm") == 0;

        id = xml_prop(root, "id");
        if (id) {
                if (parse_uint(id, &idval) < 0 || idval > INT_MAX)
                        return set_reason(err, errlen, -EINVAL, "domain id '%s' is not a number", id);
                d->id = (int)idval;
        }

        if (!xml_child(root, "name"))
                return set_reason(err, errlen, -EINVAL, "no <name> element");
        name = xmlNodeGetContent(xml_child(root, "name"));
        if (!name || !name[0])
                return set_reason(err, errlen, -EINVAL, "empty <name>");
        d->name = strdup((const char *)name);
        if (!d->name)
                return -ENOMEM;

        uuid = xml_child(root, "uuid") ? xmlNodeGetContent(xml_child(root, "uuid")) : NULL;
        if (!uuid || !uuid_is_dashed((const char *)uuid))
                return set_reason(err, errlen, -EINVAL, "<uuid> '%s' is not a UUID",
                            uuid ? (const char *)uuid : "");
        for (int i = 0; i < 36; i++)
                d->uuid[i] = (char)tolower(uuid[i]);
        d->uuid[36] = '\0';

        r = parse_vcpu(xml_child(root, "vcpu"), d, err, errlen);
        if (r < 0)
                return r;
        return parse_cputune(xml_child(root, "cputune"), d);
}

int lv_domain_parse_xml(const char *xml, struct lv_domain *out, char *err, size_t errlen)
{
        _cleanup_xml_doc_ xmlDoc *doc = NULL;
        struct lv_domain d = { .id = -1 };
        size_t len = strlen(xml);
        int r;

        if (len > INT_MAX)
                return set_reason(err, errlen, -EINVAL, "domain XML too large");
        /* No network, no entity expansion, no DTD: the document only has to be
         * read, and libxml2 must not print on its own. */
        doc = xmlReadMemory(xml, (int)len, "domain.xml", NULL,
                            XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
        if (!doc) {
                const xmlError *e = xmlGetLastError();
                char msg[200];

                snprintf(msg, sizeof(msg), "%s", e && e->message ? e->message : "unknown error");
                msg[strcspn(msg, "\n")] = '\0';
                return set_reason(err, errlen, -EINVAL, "malformed XML at line %d: %s",
                            e ? e->line : 0, msg);
        }

        r = parse_domain(xmlDocGetRootElement(doc), &d, err, errlen);
        if (r < 0) {
                if (r == -ENOMEM)
                        set_reason(err, errlen, r, "out of memory");
                lv_domain_done(&d);
                return r;
        }
        *out = d;
        return 0;
}
