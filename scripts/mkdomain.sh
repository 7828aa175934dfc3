#!/usr/bin/env bash
# Makes a sample file storage domain laid out as VDSM does, for tests, the demo
# and the benchmarks.  Prints the new domain's UUID on stdout.
#
#   scripts/mkdomain.sh ROOT [--version 3|4|5] [--disks N] [--chain K]
#       [--data-mib M] [--size-mib S] [--template] [--thin N] [--raw N]
#       [--mixed] [--sd UUID]
#
#   --version  domain VERSION (default 4)
#   --disks    N qcow2 disks (default 3), each a chain of K volumes (default 1):
#              a compat 0.10 base and K-1 compat 0.10 snapshot overlays
#   --data-mib M MiB of a pattern written into each volume (default 1; 0: none)
#   --size-mib virtual size of every disk (default 1024)
#   --template one template disk (a SHARED compat 0.10 volume)
#   --thin     N thin disks on that template (implies --template): the folder
#              holds a hard link of the template volume, its .meta and .lease,
#              and a LEAF overlay whose backing file is the template volume
#   --raw      N raw disks (one RAW volume each)
#   --mixed    every third qcow2 disk with K >= 2 gets a compat 1.1 leaf over
#              its 0.10 snapshots
#   --sd       the domain UUID (default: a new one)
#
# Speed: qemu-img runs once per distinct kind of volume, into a scratch folder;
# each volume is then a sparse copy of its prototype whose 36-byte backing name
# is overwritten in place with the parent's UUID (the header stores only the
# name, so the result is byte for byte what qemu-img create would make).
set -euo pipefail

QEMU_IMG=${VOLQ_QEMU_IMG:-/usr/bin/qemu-img}
QEMU_IO=${VOLQ_QEMU_IO:-/usr/bin/qemu-io}
BLANK=00000000-0000-0000-0000-000000000000
# The backing name of prototypes; replaced by the real parent in each copy.
PLACEHOLDER=ffffffff-ffff-ffff-ffff-ffffffffffff
UUID_RE='^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'

die() { echo "mkdomain.sh: $*" >&2; exit 2; }

usage() { sed -n '5,22p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

number() { [[ $2 =~ ^[0-9]+$ ]] || die "$1 needs a number, not '$2'"; }

[ $# -ge 1 ] || usage
case $1 in -h|--help) usage ;; esac
root=$1; shift
version=4 disks=3 chain=1 data_mib=1 size_mib=1024 template=0 thin=0 raw=0 mixed=0 sd=
while [ $# -gt 0 ]; do
  case $1 in
    --version) version=${2:-}; shift ;;
    --disks) number "$1" "${2:-}"; disks=$2; shift ;;
    --chain) number "$1" "${2:-}"; chain=$2; shift ;;
    --data-mib) number "$1" "${2:-}"; data_mib=$2; shift ;;
    --size-mib) number "$1" "${2:-}"; size_mib=$2; shift ;;
    --template) template=1 ;;
    --thin) number "$1" "${2:-}"; thin=$2; template=1; shift ;;
    --raw) number "$1" "${2:-}"; raw=$2; shift ;;
    --mixed) mixed=1 ;;
    --sd) sd=${2:-}; shift ;;
    -h|--help) usage ;;
    *) die "unknown option $1" ;;
  esac
  shift
done
case $version in 3|4|5) ;; *) die "--version must be 3, 4 or 5" ;; esac
[ "$chain" -ge 1 ] || die "--chain must be at least 1"
[ "$size_mib" -ge 1 ] || die "--size-mib must be at least 1"
[ "$data_mib" -le "$size_mib" ] || die "--data-mib is larger than --size-mib"
[ -d "$root" ] || die "$root is not a folder"
[ -x "$QEMU_IMG" ] || die "$QEMU_IMG not found"

# new_uuid VAR: a random UUID without spawning a process.
new_uuid() { local u; read -r u </proc/sys/kernel/random/uuid; printf -v "$1" '%s' "$u"; }

[ -n "$sd" ] || new_uuid sd
[[ $sd =~ $UUID_RE ]] || die "--sd must be a lower-case UUID"
dom=$root/$sd
[ ! -e "$dom" ] || die "$dom already exists"

size=$((size_mib * 1024 * 1024))
now=${EPOCHSECONDS:-$(date +%s)}
scratch=$(mktemp -d "${TMPDIR:-/tmp}/mkdomain.XXXXXX")
created=0
# A failed run leaves no half-made domain behind.
trap 'rc=$?; rm -rf "$scratch"; [ "$rc" = 0 ] || [ "$created" = 0 ] || rm -rf "$dom"' EXIT

# ---- prototypes ----

# write_data FILE FMT LAYER: M MiB of pattern 0xNN at a layer's own offset
# (cluster aligned, so an overlay never copies from its backing file).
write_data() {
  [ "$data_mib" -gt 0 ] || return 0
  local pat off
  pat=$(printf '0x%02x' $(((($3 + 1) * 0x11) % 256)))
  off=$((($3 * data_mib) % size_mib))
  [ $((off + data_mib)) -le "$size_mib" ] || off=0
  "$QEMU_IO" -f "$2" -c "write -P $pat ${off}M ${data_mib}M" "$1" >/dev/null
}

# proto_base: a compat 0.10 base with layer 0's data.
proto_base() {
  local f=$scratch/base
  [ -e "$f" ] && return 0
  "$QEMU_IMG" create -q -f qcow2 -o compat=0.10 "$f" "$size"
  write_data "$f" qcow2 0
}

# proto_overlay LAYER COMPAT: an overlay over the placeholder with LAYER's data.
proto_overlay() {
  local f=$scratch/overlay-$1-$2
  [ -e "$f" ] && return 0
  [ -e "$scratch/$PLACEHOLDER" ] ||
    "$QEMU_IMG" create -q -f qcow2 -o compat=0.10 "$scratch/$PLACEHOLDER" "$size"
  (cd "$scratch" && "$QEMU_IMG" create -q -f qcow2 -o "compat=$2" -b "$PLACEHOLDER" -F qcow2 \
      -u "overlay-$1-$2" "$size")
  (cd "$scratch" && write_data "overlay-$1-$2" qcow2 "$1")
}

proto_raw() {
  local f=$scratch/raw
  [ -e "$f" ] && return 0
  "$QEMU_IMG" create -q -f raw "$f" "$size"
  write_data "$f" raw 0
}

# Where the backing name sits in an overlay prototype (same in every copy):
# header bytes 8..15 (offset) and 16..19 (length), big-endian.
declare -A backing_off
backing_offset() {
  local off len
  if [ -z "${backing_off[$1]:-}" ]; then
    off=$(od -An -tu8 --endian=big -j8 -N8 "$1")
    len=$(od -An -tu4 --endian=big -j16 -N4 "$1")
    [ $((len)) -eq 36 ] || die "unexpected backing name length $len in $1"
    backing_off[$1]=$((off))
  fi
  off_out=${backing_off[$1]}
}

# ---- volumes ----

# copy_volume PROTO DEST [PARENT]: a sparse copy, backing name set to PARENT.
copy_volume() {
  cp --sparse=always "$1" "$2"
  [ $# -ge 3 ] || return 0
  backing_offset "$1"
  dd of="$2" bs=1 seek="$off_out" count=36 conv=notrunc status=none <<<"$3"
}

# write_meta DIR VOL IMAGE FORMAT VOLTYPE PUUID ALIAS: the .meta, keys sorted,
# size keys of the domain version, and an empty .lease.
write_meta() {
  local desc
  desc="{\"DiskAlias\":\"$7\",\"DiskDescription\":\"\"}"
  {
    [ "$version" -ge 5 ] && echo "CAP=$size"
    echo "CTIME=$now"
    echo "DESCRIPTION=$desc"
    echo "DISKTYPE=DATA"
    echo "DOMAIN=$sd"
    echo "FORMAT=$4"
    echo "GEN=0"
    echo "IMAGE=$3"
    echo "LEGALITY=LEGAL"
    [ "$version" -lt 5 ] && echo "MTIME=0"
    echo "PUUID=$6"
    [ "$version" -ge 5 ] && echo "SEQ=0"
    [ "$version" -lt 5 ] && echo "SIZE=$((size / 512))"
    echo "TYPE=SPARSE"
    echo "VOLTYPE=$5"
    echo "EOF"
  } >"$1/$2.meta"
  : >"$1/$2.lease"
}

disk_no=0
alias_next() { disk_no=$((disk_no + 1)); printf -v "$1" 'vm-%03d_Disk1' "$disk_no"; }

# cow_disk INDEX: a chain of $chain volumes, leaf 1.1 on every third with --mixed.
cow_disk() {
  local img dir alias parent=$BLANK vol j compat voltype
  new_uuid img
  dir=$dom/images/$img
  mkdir "$dir"
  alias_next alias
  for ((j = 0; j < chain; j++)); do
    new_uuid vol
    compat=0.10
    [ "$mixed" = 1 ] && [ "$chain" -ge 2 ] && [ $((j + 1)) = "$chain" ] && [ $(($1 % 3)) = 0 ] &&
      compat=1.1
    voltype=INTERNAL
    [ $((j + 1)) = "$chain" ] && voltype=LEAF
    if [ "$j" = 0 ]; then
      copy_volume "$scratch/base" "$dir/$vol"
    else
      proto_overlay "$j" "$compat"
      copy_volume "$scratch/overlay-$j-$compat" "$dir/$vol" "$parent"
    fi
    write_meta "$dir" "$vol" "$img" COW "$voltype" "$parent" "$alias"
    parent=$vol
  done
}

raw_disk() {
  local img vol alias
  new_uuid img
  new_uuid vol
  mkdir "$dom/images/$img"
  alias_next alias
  copy_volume "$scratch/raw" "$dom/images/$img/$vol"
  write_meta "$dom/images/$img" "$vol" "$img" RAW LEAF "$BLANK" "$alias"
}

template_disk() {
  new_uuid tmpl_img
  new_uuid tmpl_vol
  mkdir "$dom/images/$tmpl_img"
  copy_volume "$scratch/base" "$dom/images/$tmpl_img/$tmpl_vol"
  write_meta "$dom/images/$tmpl_img" "$tmpl_vol" "$tmpl_img" COW SHARED "$BLANK" template-001
}

# thin_disk: the template volume hard-linked in (its .meta keeps the template's
# IMAGE), under a LEAF overlay of the disk's own.
thin_disk() {
  local img dir vol alias f
  new_uuid img
  new_uuid vol
  dir=$dom/images/$img
  mkdir "$dir"
  alias_next alias
  for f in "$tmpl_vol" "$tmpl_vol.meta" "$tmpl_vol.lease"; do
    ln "$dom/images/$tmpl_img/$f" "$dir/$f"
  done
  proto_overlay 1 0.10
  copy_volume "$scratch/overlay-1-0.10" "$dir/$vol" "$tmpl_vol"
  write_meta "$dir" "$vol" "$img" COW LEAF "$tmpl_vol" "$alias"
}

# ---- the domain ----

# dom_md/metadata: sorted KEY=VALUE lines sealed with _SHA_CKSUM, the SHA-1 of
# the lines concatenated without newlines.
write_domain_md() {
  local pool lines=() sum
  new_uuid pool
  [ "$version" -ge 5 ] && lines+=("ALIGNMENT=1048576" "BLOCK_SIZE=512")
  lines+=("CLASS=Data" "DESCRIPTION=volq-sample" "IOOPTIMEOUTSEC=10" "LEASERETRIES=3"
    "LEASETIMESEC=60" "LOCKPOLICY=" "LOCKRENEWALINTERVALSEC=5" "POOL_UUID=$pool"
    "REMOTE_PATH=nfs.example.com:/exports/data" "ROLE=Regular" "SDUUID=$sd" "TYPE=NFS"
    "VERSION=$version")
  sum=$(printf '%s' "${lines[@]}" | sha1sum)
  { printf '%s\n' "${lines[@]}"; echo "_SHA_CKSUM=${sum%% *}"; } >"$dom/dom_md/metadata"
  : >"$dom/dom_md/ids"; : >"$dom/dom_md/inbox"; : >"$dom/dom_md/outbox"; : >"$dom/dom_md/leases"
  [ "$version" -lt 4 ] || : >"$dom/dom_md/xleases"
}

mkdir -p "$dom/dom_md" "$dom/images"
created=1
write_domain_md
[ $((disks + template + thin)) -gt 0 ] && proto_base
[ "$raw" -gt 0 ] && proto_raw
for ((i = 1; i <= disks; i++)); do cow_disk "$i"; done
for ((i = 1; i <= raw; i++)); do raw_disk; done
if [ "$template" = 1 ]; then
  template_disk
  for ((i = 1; i <= thin; i++)); do thin_disk; done
fi
echo "$sd"
