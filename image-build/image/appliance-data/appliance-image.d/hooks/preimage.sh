#!/bin/sh
# rpi-image-gen pre-image hook: write genimage.cfg from genimage.cfg.in, and point the
# kernel at the root by label, read-only.
set -eu

rootfs=$1
genimg_in=$2
# Set by rpi-image-gen from the config and the layers' X-Env-Var declarations.
: "${IGconf_image_name:?}" "${IGconf_image_suffix:?}" "${IGconf_image_assetdir:?}"
: "${IGconf_image_boot_part_size:?}" "${IGconf_image_root_part_size:?}"
: "${IGconf_image_data_part_size:?}"

signature=$(od -An -N4 -tx4 /dev/urandom | tr -d ' ')
sed -e "s|<IMAGE_NAME>|$IGconf_image_name|g" \
    -e "s|<IMAGE_SUFFIX>|$IGconf_image_suffix|g" \
    -e "s|<DISK_SIGNATURE>|0x$signature|g" \
    -e "s|<BOOT_SIZE>|$IGconf_image_boot_part_size|g" \
    -e "s|<ROOT_SIZE>|$IGconf_image_root_part_size|g" \
    -e "s|<DATA_SIZE>|$IGconf_image_data_part_size|g" \
    "$IGconf_image_assetdir/genimage.cfg.in" > "$genimg_in/genimage.cfg"

cmdline=$rootfs/boot/firmware/cmdline.txt
if [ -f "$cmdline" ]; then
    sed -i -e 's|root=[^ ]*|root=LABEL=ROOT|' -e 's/\(^\| \)rw\( \|$\)/\1ro\2/' "$cmdline"
    grep -qw ro "$cmdline" || sed -i '1s/$/ ro/' "$cmdline"
fi
