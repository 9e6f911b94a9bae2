/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cpulist.h"
#include "macro.h"
#include "tap.h"
#include "topology.h"

static void synthetic_levels(void)
{
        _cleanup_topology_ struct topology *t = NULL;
        int r = topology_load_synthetic("pack:2 numa:2 l3:2 core:8 pu:2", &t);
        CHECK(r == 0, "load: %s", strerror(-r));
        if (r < 0)
                return;
        CHECK(t->n_pus == 128, "n_pus %zu", t->n_pus);
        CHECK(t->n_cores == 64, "n_cores %zu", t->n_cores);
        CHECK(t->n_l3s == 8, "n_l3s %zu", t->n_l3s);
        CHECK(t->n_numas == 4, "n_numas %zu", t->n_numas);
        CHECK(t->n_packages == 2, "n_packages %zu", t->n_packages);
        /* SMT siblings are adjacent in dense order and share a core. */
        CHECK(t->pus[0].core == t->pus[1].core, "pu0/pu1 cores %u %u", t->pus[0].core, t->pus[1].core);
        CHECK(t->pus[1].core != t->pus[2].core, "pu1/pu2 share a core");
        /* 16 PUs per L3 group, 32 per NUMA node, 64 per package. */
        CHECK(t->pus[15].l3 == 0 && t->pus[16].l3 == 1, "l3 boundaries");
        CHECK(t->pus[31].numa == 0 && t->pus[32].numa == 1, "numa boundaries");
        CHECK(t->pus[63].package == 0 && t->pus[64].package == 1, "package boundaries");
        CHECK(t->numas[1].n_pus == 32 && t->numas[1].first_pu == 32, "numa1 %u@%u",
              t->numas[1].n_pus, t->numas[1].first_pu);
        for (size_t i = 0; i < t->n_pus; i++)
                CHECK(topology_pu_dense(t, t->pus[i].os_index) == (int)i, "dense map of pu %zu", i);

        _cleanup_bitmap_ hwloc_bitmap_t usable = hwloc_bitmap_alloc();
        _cleanup_bitmap_ hwloc_bitmap_t reserved = hwloc_bitmap_alloc();
        CHECK(cpulist_parse("0-1,100", reserved, NULL, 0) == 0, "parse reserved");
        CHECK(topology_usable(t, reserved, usable) == 0, "usable");
        CHECK(hwloc_bitmap_weight(usable) == 125, "usable weight %d", hwloc_bitmap_weight(usable));
        CHECK(!hwloc_bitmap_isset(usable, 100) && hwloc_bitmap_isset(usable, 2), "reserved CPUs excluded");

        hwloc_bitmap_fill(reserved);
        CHECK(topology_usable(t, reserved, usable) == -ENOSPC, "everything reserved");
}

static void flat_and_large(void)
{
        _cleanup_topology_ struct topology *t = NULL;
        /* No cores, caches or NUMA nodes: every level degrades gracefully. */
        int r = topology_load_synthetic("pu:2", &t);
        CHECK(r == 0, "pu:2: %s", strerror(-r));
        if (r == 0) {
                CHECK(t->n_pus == 2 && t->n_cores == 2 && t->n_l3s == 1 && t->n_numas == 1,
                      "flat: pus %zu cores %zu l3 %zu numa %zu", t->n_pus, t->n_cores, t->n_l3s, t->n_numas);
        }
        topology_free(t);
        t = NULL;
        r = topology_load_synthetic("pack:4 numa:2 l3:4 core:16 pu:2", &t);
        CHECK(r == 0 && t->n_pus == 1024 && t->n_numas == 8 && t->n_l3s == 32, "1024 PUs");
}

static void bad_input(void)
{
        struct topology *t = NULL;
        char err[256] = "";
        CHECK(topology_load_spec("pack:2 banana:3", &t, err, sizeof(err)) < 0 && !t, "bad synthetic accepted");
        CHECK(strstr(err, "invalid synthetic topology 'pack:2 banana:3'") != NULL, "message: %s", err);
        CHECK(topology_load_spec("/nonexistent/topo.xml", &t, err, sizeof(err)) < 0 && !t, "missing xml accepted");
        CHECK(strstr(err, "/nonexistent/topo.xml") != NULL, "message: %s", err);
        CHECK(topology_load_spec("", &t, err, sizeof(err)) == -EINVAL, "empty spec accepted");
}

static void host(void)
{
        _cleanup_topology_ struct topology *t = NULL;
        char err[256];
        int r = topology_load_spec("host", &t, err, sizeof(err));
        CHECK(r == 0, "host: %s", err);
        if (r == 0)
                CHECK(t->n_pus == (size_t)sysconf(_SC_NPROCESSORS_CONF), "host PUs %zu vs %ld", t->n_pus,
                      sysconf(_SC_NPROCESSORS_CONF));
}

int main(void)
{
        synthetic_levels();
        flat_and_large();
        bad_input();
        host();
        return test_result();
}
