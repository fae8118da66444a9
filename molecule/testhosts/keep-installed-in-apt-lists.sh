#!/bin/sh
# mmdebstrap hook for the test VM image: cut the apt package lists down to what is installed.
# python-apt reads every entry of the lists each time Ansible's apt module opens the cache:
# with bookworm's 63,000 packages that is ~8 s per apt task under software emulation. The roles'
# packages are all preinstalled (and so still listed); an install of anything else would fail
# with "no package matching", which in a VM that reaches nothing but the mirror is no loss.
set -eu
root=$1
installed=$(mktemp)
dpkg-query --admindir="$root/var/lib/dpkg" -W -f '${Package}\n' >"$installed"
for list in "$root"/var/lib/apt/lists/*_Packages; do
  # First file: one name per line. Then the list, one stanza per paragraph (RS="").
  awk 'NR == FNR { keep[$0]; next }
       { name = $0; sub(/\n.*/, "", name); sub(/^Package: /, "", name); if (name in keep) print $0 "\n" }' \
    "$installed" RS= "$list" >"$list.kept"
  mv "$list.kept" "$list"
done
rm -f "$installed"
