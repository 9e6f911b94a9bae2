#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# vcpuspreadd under valgrind memcheck, for the integration tests: set
#   VST_DAEMON=tests/integration/valgrind-daemon.sh
#   VALGRIND_DAEMON=build/daemon/vcpuspreadd  VALGRIND_LOG_DIR=DIR
# Same pid as the daemon (exec), one log per process in DIR.  Memory errors
# and leaks "definitely lost" make valgrind exit 99 (a test that stops the
# daemon checks its exit status), and tools/test.sh reads every log
# afterwards, for the daemons a test killed.
exec valgrind --quiet --error-exitcode=99 --leak-check=full --show-leak-kinds=definite \
        --errors-for-leak-kinds=definite --num-callers=30 \
        --log-file="${VALGRIND_LOG_DIR:?}/vcpuspreadd.%p.log" "${VALGRIND_DAEMON:?}" "$@"
