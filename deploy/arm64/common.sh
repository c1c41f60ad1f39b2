# common.sh: shell functions shared by build.sh and test.sh; sourced, never run.
#
# Rules:
# M1. Never rm -rf a root that still has file systems mounted in it (an interrupted debootstrap
#     leaves proc and sys, and a bind-mounted /dev would take the host's devices with it):
#     remove_root unmounts what is mounted below it, deepest first, and refuses if any remains.

remove_root() {
    local m
    for m in $(awk -v r="$1/" 'index($2, r) == 1 {print $2}' /proc/mounts | sort -r); do
        umount "$m" || umount -l "$m"
    done
    if awk -v r="$1/" 'index($2, r) == 1 {found=1} END {exit !found}' /proc/mounts; then
        echo "refusing to delete $1: file systems are still mounted in it" >&2
        exit 1
    fi
    rm -rf "$1"
}
