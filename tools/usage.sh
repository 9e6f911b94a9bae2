# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Sourced by the project's shell programs: --help prints the comment block
# at the top of the script (its documentation, kept in one place), and a
# usage error says what is wrong and exits 2, as the C programs do.

# usage_header SCRIPT: the leading comment of SCRIPT, without '#' and SPDX.
usage_header() {
        sed -n -e '1d' -e '/^# SPDX/d' -e '/^#/!q' -e 's/^# \{0,1\}//p' "$1" | sed '/./,$!d'
}

# usage_handle_help SCRIPT ARGS...: print the header and exit 0 when ARGS
# hold -h or --help.
usage_handle_help() {
        local script=$1 arg
        shift
        for arg; do
                case $arg in
                -h|--help) usage_header "$script"; exit 0 ;;
                esac
        done
}

# usage_error MESSAGE...: one line on stderr, a hint, exit status 2.
usage_error() {
        local prog
        prog=$(basename "$0")
        echo "$prog: $*" >&2
        echo "Try '$prog --help'." >&2
        exit 2
}

# usage_count NAME VALUE: VALUE must be a positive whole number.
usage_count() {
        [[ $2 =~ ^[1-9][0-9]{0,5}$ ]] || usage_error "$1 must be a positive whole number, not '$2'"
}
