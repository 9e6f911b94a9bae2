/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * lv_domain_parse_xml against live XML dumped from this host's libvirt 9.0
 * (tests/unit/fixtures/libvirt; the two edited ones say why in a comment; kvm.xml
 * from a kvm domain) and
 * against broken documents.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cpulist.h"
#include "domain-xml.h"
#include "macro.h"
#include "tap.h"

static char *read_fixture(const char *name)
{
        char path[512];
        char *buf = NULL;
        size_t len = 0;
        FILE *f;

        snprintf(path, sizeof(path), "%s/%s", FIXTURE_DIR, name);
        f = fopen(path, "re");
        if (!f) {
                fprintf(stderr, "cannot open %s\n", path);
                exit(1);
        }
        if (getdelim(&buf, &len, '\0', f) < 0) {
                fprintf(stderr, "cannot read %s\n", path);
                exit(1);
        }
        fclose(f);
        return buf;
}

/* Parse fixture @name; on failure the returned domain is zeroed. */
static int parse_fixture(const char *name, struct lv_domain *d)
{
        _cleanup_free_ char *xml = read_fixture(name);
        char err[256] = "";
        int r = lv_domain_parse_xml(xml, d, err, sizeof(err));

        CHECK(r == 0, "%s: %s", name, err);
        return r;
}

static void check_restriction(const struct lv_domain *d, const char *expect)
{
        _cleanup_free_ char *s = NULL;

        if (!expect) {
                CHECK(d->restriction == NULL, "%s: unexpected restriction", d->name);
                return;
        }
        CHECK(d->restriction != NULL, "%s: no restriction, expected %s", d->name, expect);
        if (!d->restriction)
                return;
        s = cpulist_format(d->restriction);
        CHECK(s && strcmp(s, expect) == 0, "%s: restriction '%s', expected '%s'", d->name, s, expect);
}

static void test_pinned(void)
{
        struct lv_domain d;

        if (parse_fixture("pinned.xml", &d) < 0)
                return;
        CHECK(strcmp(d.name, "libvirt-fixture-pinned") == 0, "name '%s'", d.name);
        CHECK(strcmp(d.uuid, "6b416351-5f60-4016-b0cc-45c8b0f9207d") == 0, "uuid '%s'", d.uuid);
        CHECK(d.id == 14, "id %d", d.id);
        CHECK(d.n_vcpus == 2 && d.max_vcpus == 4, "vcpus %u/%u", d.n_vcpus, d.max_vcpus);
        CHECK(d.operator_pinned, "<vcpupin> not seen");
        CHECK(!d.kvm, "type='qemu' is TCG");
        CHECK(d.operator_reason && strcmp(d.operator_reason, "<vcpupin vcpu='0'> in the live XML") == 0,
              "reason '%s'", d.operator_reason);
        check_restriction(&d, "1");
        lv_domain_done(&d);
        CHECK(d.name == NULL && d.restriction == NULL && d.operator_reason == NULL,
              "lv_domain_done left pointers");
}

/* kvm.xml: the live XML of an OS-less <domain type='kvm'> on this host
 * (vst-kvmfixture-xml1, virsh dumpxml, 2026-12-01, libvirt 9.0). */
static void test_kvm(void)
{
        struct lv_domain d;

        if (parse_fixture("kvm.xml", &d) < 0)
                return;
        CHECK(d.kvm, "type='kvm' not seen");
        CHECK(d.id == 206 && d.n_vcpus == 2 && !d.operator_pinned, "id %d, vcpus %u", d.id, d.n_vcpus);
        lv_domain_done(&d);
}

static void test_cpuset_only(void)
{
        struct lv_domain d;

        if (parse_fixture("cpuset.xml", &d) < 0)
                return;
        CHECK(!d.operator_pinned, "a cpuset alone is a restriction, not operator pinning");
        CHECK(d.operator_reason == NULL, "reason '%s'", d.operator_reason);
        check_restriction(&d, "1");
        lv_domain_done(&d);
}

static void test_cpuset_exclusion(void)
{
        struct lv_domain d;

        if (parse_fixture("cpuset-exclusion.xml", &d) < 0)
                return;
        CHECK(!d.operator_pinned, "cpuset with ^ counted as pinning");
        check_restriction(&d, "0-1,3");
        lv_domain_done(&d);
}

static void test_placement_auto(void)
{
        struct lv_domain d;

        if (parse_fixture("placement-auto.xml", &d) < 0)
                return;
        CHECK(d.operator_pinned, "placement='auto' not seen");
        CHECK(d.operator_reason && strstr(d.operator_reason, "placement='auto'"),
              "reason '%s'", d.operator_reason);
        check_restriction(&d, NULL);
        lv_domain_done(&d);
}

static void test_odd_name(void)
{
        struct lv_domain d;

        if (parse_fixture("odd-name.xml", &d) < 0)
                return;
        CHECK(strcmp(d.name, "libvirt-odd b 'q' \"x\" <\xc3\xbc\xe2\x82\xac> &") == 0,
              "name '%s'", d.name);
        CHECK(d.n_vcpus == 1 && d.max_vcpus == 2, "vcpus %u/%u", d.n_vcpus, d.max_vcpus);
        /* It has <emulatorpin> only: the vCPUs are still free. */
        CHECK(!d.operator_pinned, "emulatorpin counted as operator pinning: %s", d.operator_reason);
        check_restriction(&d, NULL);
        lv_domain_done(&d);
}

#define UUID "<uuid>0c3a4d8e-2f7a-4f43-9d38-7f1e6f2a9b10</uuid>"

/* Small documents for the cases no live dump shows. */
static void test_inline_ok(void)
{
        static const struct {
                const char *xml;
                unsigned n, max;
                bool pinned;
                const char *restriction;
                int id;
        } cases[] = {
                /* not running: no id; current defaults to the maximum */
                { "<domain><name>a</name>" UUID "<vcpu>3</vcpu></domain>", 3, 3, false, NULL, -1 },
                /* iothreadpin and emulatorpin leave the vCPUs free */
                { "<domain id='7'><name>a</name>" UUID "<vcpu current='1'>2</vcpu><cputune>"
                  "<emulatorpin cpuset='0'/><iothreadpin iothread='1' cpuset='1'/></cputune></domain>",
                  1, 2, false, NULL, 7 },
                /* exclusions apply left to right as in libvirt */
                { "<domain><name>a</name>" UUID "<vcpu cpuset='^2,0-3'>2</vcpu></domain>", 2, 2, false, "0-3", -1 },
                { "<domain><name>a</name>" UUID "<vcpu cpuset='0-7,^1,^6-7, 9'>2</vcpu></domain>", 2, 2, false,
                  "0,2-5,9", -1 },
                /* placement='static' is the default, not the operator's pinning */
                { "<domain><name>a</name>" UUID "<vcpu placement='static'>2</vcpu></domain>", 2, 2, false, NULL, -1 },
                /* vcpupin without other cputune content */
                { "<domain><name>a</name>" UUID "<vcpu>2</vcpu><cputune><vcpupin vcpu='1' cpuset='0'/>"
                  "</cputune></domain>", 2, 2, true, NULL, -1 },
                /* upper-case UUIDs are accepted and stored the way libvirt prints them */
                { "<domain><name>a</name><uuid>0C3A4D8E-2F7A-4F43-9D38-7F1E6F2A9B10</uuid><vcpu>1</vcpu></domain>",
                  1, 1, false, NULL, -1 },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                struct lv_domain d;
                char err[256] = "";
                int r = lv_domain_parse_xml(cases[i].xml, &d, err, sizeof(err));

                CHECK(r == 0, "case %zu: %s", i, err);
                if (r < 0)
                        continue;
                CHECK(d.n_vcpus == cases[i].n && d.max_vcpus == cases[i].max, "case %zu: vcpus %u/%u",
                      i, d.n_vcpus, d.max_vcpus);
                CHECK(d.operator_pinned == cases[i].pinned, "case %zu: pinned %d", i, d.operator_pinned);
                CHECK(d.id == cases[i].id, "case %zu: id %d", i, d.id);
                CHECK(strcmp(d.uuid, "0c3a4d8e-2f7a-4f43-9d38-7f1e6f2a9b10") == 0, "case %zu: uuid %s",
                      i, d.uuid);
                check_restriction(&d, cases[i].restriction);
                lv_domain_done(&d);
        }
}

static void test_rejects(void)
{
        static const struct {
                const char *xml;
                const char *reason;     /* substring of the message */
        } cases[] = {
                { "<domain><name>a</name>" UUID "<vcpu>2</vcpu>", "malformed XML" },
                { "", "malformed XML" },
                { "<domain><name>a</name>" UUID "<vcpu>2</vcpu></domian>", "malformed XML" },
                { "<network><name>a</name></network>", "root element is <network>" },
                { "<domain>" UUID "<vcpu>2</vcpu></domain>", "no <name>" },
                { "<domain><name></name>" UUID "<vcpu>2</vcpu></domain>", "empty <name>" },
                { "<domain><name>a</name><vcpu>2</vcpu></domain>", "is not a UUID" },
                { "<domain><name>a</name><uuid>0c3a4d8e-2f7a-4f43-9d38-7f1e6f2a9b1</uuid><vcpu>2</vcpu></domain>",
                  "is not a UUID" },
                { "<domain><name>a</name>" UUID "</domain>", "no <vcpu>" },
                { "<domain><name>a</name>" UUID "<vcpu>0</vcpu></domain>", "not a positive number" },
                { "<domain><name>a</name>" UUID "<vcpu>two</vcpu></domain>", "not a positive number" },
                { "<domain><name>a</name>" UUID "<vcpu>-2</vcpu></domain>", "not a positive number" },
                { "<domain><name>a</name>" UUID "<vcpu current='3'>2</vcpu></domain>", "not in 1..2" },
                { "<domain><name>a</name>" UUID "<vcpu current='0'>2</vcpu></domain>", "not in 1..2" },
                { "<domain><name>a</name>" UUID "<vcpu cpuset='0-3,^'>2</vcpu></domain>", "empty entry" },
                { "<domain><name>a</name>" UUID "<vcpu cpuset='0-3,^x'>2</vcpu></domain>", "expected a CPU number" },
                { "<domain><name>a</name>" UUID "<vcpu cpuset='0,^0'>2</vcpu></domain>", "leaves no CPU" },
                { "<domain><name>a</name>" UUID "<vcpu cpuset='0,,1'>2</vcpu></domain>", "empty entry" },
                { "<domain><name>a</name>" UUID "<vcpu cpuset=''>2</vcpu></domain>", "is empty" },
                { "<domain><name>a</name>" UUID "<vcpu cpuset='3-1'>2</vcpu></domain>", "reversed" },
                { "<domain id='x'><name>a</name>" UUID "<vcpu>2</vcpu></domain>", "domain id" },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                struct lv_domain d = { .name = (char *)"untouched" };
                char err[256] = "";
                int r = lv_domain_parse_xml(cases[i].xml, &d, err, sizeof(err));

                CHECK(r == -EINVAL, "case %zu accepted (r=%d)", i, r);
                CHECK(strstr(err, cases[i].reason) != NULL, "case %zu: message '%s', expected '%s'",
                      i, err, cases[i].reason);
                CHECK(d.name && strcmp(d.name, "untouched") == 0, "case %zu: output written on failure", i);
                if (r == 0 && d.name != (char *)"untouched")
                        lv_domain_done(&d);
        }
}

/* An external entity must not be fetched: the name must not become the
 * contents of a host file. */
static void test_no_external_entities(void)
{
        char path[] = "/tmp/test-libvirt-xml-XXXXXX";
        int fd = mkstemp(path);
        char xml[512], err[256] = "";
        struct lv_domain d;
        int r;

        CHECK(fd >= 0, "mkstemp failed");
        if (fd < 0)
                return;
        CHECK(write(fd, "SECRET", 6) == 6, "write failed");
        close(fd);
        snprintf(xml, sizeof(xml),
                 "<?xml version='1.0'?><!DOCTYPE domain [<!ENTITY x SYSTEM 'file://%s'>]>"
                 "<domain><name>a&x;</name>" UUID "<vcpu>1</vcpu></domain>", path);
        r = lv_domain_parse_xml(xml, &d, err, sizeof(err));
        unlink(path);
        if (r == 0) {
                CHECK(strstr(d.name, "SECRET") == NULL, "external entity expanded into '%s'", d.name);
                lv_domain_done(&d);
        }
}

int main(void)
{
        test_pinned();
        test_kvm();
        test_cpuset_only();
        test_cpuset_exclusion();
        test_placement_auto();
        test_odd_name();
        test_inline_ok();
        test_rejects();
        test_no_external_entities();
        return test_result();
}
