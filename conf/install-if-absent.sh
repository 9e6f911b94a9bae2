#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# Meson install script: install-if-absent.sh FILE DIR
# Copies FILE into $DESTDIR/DIR with mode 0644 unless a file of that name is
# already there: an operator's edited configuration is never overwritten.
set -eu
src=$1
dir=${DESTDIR:-}$2
dest=$dir/$(basename "$src")
if [ -e "$dest" ] || [ -L "$dest" ]; then
        echo "Keeping existing $dest"
        exit 0
fi
install -d -m 0755 "$dir"
install -m 0644 "$src" "$dest"
echo "Installing $src to $dir"
