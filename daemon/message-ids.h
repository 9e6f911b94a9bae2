/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * One MESSAGE_ID per kind of event.  Each is explained in
 * systemd/vcpuspreadd.catalog so `journalctl -x` tells an operator what the
 * daemon did and why.  Never reuse an id for another meaning.
 */

#define MSGID_VCPU_MOVED        "954872ac443543179452f41d7304bb32" /* a vCPU got a new mask */
#define MSGID_DOMAIN_FOUND      "ed08fd35f8f14eabb37ef8bf1dfbe966" /* a guest started managing */
#define MSGID_DOMAIN_GONE       "7ef58196d00e42e98aa9678b0de2079a" /* a guest stopped / vanished */
#define MSGID_BACKED_OFF        "21a8d602547445e8a1e308849d49c0cb" /* operator owns a guest or vCPU */
#define MSGID_APPLY_FAILED      "c31966fc352b4c58a0f16450c4291958" /* a move could not be applied */
#define MSGID_LIBVIRT_CONN      "0ff863a46cb049839834518806bf56c0" /* connection lost / re-established */
#define MSGID_CONFIG            "d16c1b17307f4b9da8f58c0ac8986470" /* configuration loaded / rejected */
#define MSGID_DAEMON_STATE      "c2d745b62b21466b89a62212921fd7b4" /* daemon started / stopping */
#define MSGID_PLACED_LATENCY    "9320469519e940c6987818016b00addb" /* a new guest's vCPUs all placed */
#define MSGID_THREADS_BY_NAME   "d54279ab5c0b416bb6fe9a13c69499e4" /* threads found by name, no status file */
#define MSGID_VCPU_COUNT        "61b87ae80b4e4ffba1fdf0477106e552" /* a guest's vCPU count changed */
#define MSGID_THREADS_NOT_FOUND "ceed148838e24b18a575b00f51682aca" /* a guest's vCPU threads not found */
#define MSGID_AUTO_MODE         "2faf7187840a4e5dae3f7c7748d582e2" /* Policy=auto: a guest's mode changed */
#define MSGID_AUTO_TRIAL_KEPT   "df944897cd754e7da167b212516b27b7" /* Policy=auto: a trial kept the new mode */
#define MSGID_AUTO_TRIAL_REVERTED "6fe13ab4587f43438550ebe2b516107d" /* Policy=auto: a trial failed, back to kernel */
#define MSGID_AUTO_RELEASED     "70d9107c4e8d44029f56f8bcecc18d70" /* Policy=auto: released for work conservation */
#define MSGID_NO_USABLE_CPUS    "b4876768d59c46c88c767469c14a6ac1" /* a guest's allowed CPUs leave none */
