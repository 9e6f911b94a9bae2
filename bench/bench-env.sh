# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Sourced by the benchmarks that run real guests under the daemon, as
#   source "$here/bench-env.sh" NAME "$@"
# with the script's arguments [GUESTS] [SECONDS]: --help prints the script's
# header, bad counts exit 2 before anything starts, then the integration
# harness makes the host ready (root, libvirtd, journald) and loads the
# daemon helpers.  Sourced at top level so the harness's globals stay global.
bench_env_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$bench_env_dir/../tools/usage.sh"
VST_TEST_NAME=$1
shift
usage_handle_help "$0" "$@"
(( $# <= 2 )) || usage_error "at most two arguments: GUESTS SECONDS"
usage_count GUESTS "${1:-1}"
usage_count SECONDS "${2:-1}"
source "$bench_env_dir/../tests/integration/env.sh"
env_init
source "$bench_env_dir/../tests/integration/daemon.sh"
