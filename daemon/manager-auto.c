/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Policy=auto: signals, the per-guest mode (lib/adaptive.h), co-scheduling gangs. */
#include "manager-internal.h"
