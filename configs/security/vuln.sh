#!/usr/bin/env bash
# govulncheck of every package of the module, against the Go vulnerability database.
#
#   configs/security/vuln.sh            exit 0 when no reachable vulnerability is found
#
# This machine (and CI) reach only the package registries, not vuln.go.dev, so by
# default the database is built locally from the golang.org/x/vulndb Go module (its
# data/osv reports, indexed with the module's own cmd/indexdb) and cached under
# .cache/vulndb/<version>/. Environment:
#   GOVULNCHECK_VERSION  pinned govulncheck, installed into ./bin (default v1.9.0)
#   VULNDB_VERSION       golang.org/x/vulndb module version (default pinned below)
#   VULNDB_URL           use this database instead (e.g. https://vuln.go.dev)
#   VULN_STDLIB_WARN_ONLY=1  report reachable standard-library findings but do not fail
#                        on them (they need a newer Go toolchain, not a go get); any
#                        reachable finding in a module still fails
# Extra arguments go to govulncheck (e.g. -show verbose).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"

govulncheck_version=${GOVULNCHECK_VERSION:-v1.9.0}
vulndb_version=${VULNDB_VERSION:-v0.0.0-20261105234957-e22db6528018}
bin=$root/bin/govulncheck

log() { printf 'vuln: %s\n' "$*" >&2; }

if [[ ! -x $bin ]] || ! "$bin" -version 2>/dev/null | grep -q "govulncheck@$govulncheck_version"; then
	log "installing govulncheck $govulncheck_version into ./bin"
	GOBIN=$root/bin go install "golang.org/x/vuln/cmd/govulncheck@$govulncheck_version"
fi

db_url=${VULNDB_URL:-}
if [[ -z $db_url ]]; then
	cache=$root/.cache/vulndb/$vulndb_version
	if [[ ! -f $cache/db/index/db.json ]]; then
		log "building the vulnerability database from golang.org/x/vulndb@$vulndb_version"
		mkdir -p "$cache"
		GOBIN=$cache/bin go install "golang.org/x/vulndb/cmd/indexdb@$vulndb_version"
		src=$(go mod download -json "golang.org/x/vulndb@$vulndb_version" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
		[[ -d $src/data/osv ]] || { log "error: no data/osv in $src"; exit 1; }
		rm -rf "$cache/db.tmp"
		"$cache/bin/indexdb" -vulns "$src/data/osv" -out "$cache/db.tmp"
		rm -rf "$cache/db"
		mv "$cache/db.tmp" "$cache/db"
	fi
	db_url=file://$cache/db
	log "database: golang.org/x/vulndb@$vulndb_version ($(find "$cache/db/ID" -name "*.json" | wc -l) reports)"
fi
log "go: $(go env GOVERSION)"
if [[ ${VULN_STDLIB_WARN_ONLY:-0} != 1 ]]; then
	exec "$bin" -db "$db_url" "$@" ./...
fi
out=$(mktemp)
trap 'rm -f "$out"' EXIT
"$bin" -db "$db_url" -format json ./... >"$out"
python3 - "$out" <<'PY'
import json, sys
dec, text, pos, msgs = json.JSONDecoder(), open(sys.argv[1]).read(), 0, []
while True:
    while pos < len(text) and text[pos].isspace():
        pos += 1
    if pos >= len(text):
        break
    obj, pos = dec.raw_decode(text, pos)
    msgs.append(obj)
osv = {m["osv"]["id"]: m["osv"] for m in msgs if "osv" in m}
found = {}
for m in msgs:
    f = m.get("finding")
    if not f or not f["trace"] or not f["trace"][0].get("function"):
        continue  # imported or required, but not called
    fr = f["trace"][0]
    found.setdefault(f["osv"], (fr.get("module", "?"), fr.get("version", "?"), f.get("fixed_version", "")))
mods = {k: v for k, v in found.items() if v[0] != "stdlib"}
std = {k: v for k, v in found.items() if v[0] == "stdlib"}
for k, (mod, ver, fix) in sorted(found.items()):
    summary = osv.get(k, {}).get("summary", "")
    print(f"  {k}  {mod}@{ver}  fixed in {fix or '?'}  {summary}")
print(f"vuln: {len(found)} reachable ({len(mods)} in modules, {len(std)} in the standard library)")
if std:
    print("vuln: WARNING: standard-library findings need a newer Go toolchain (VULN_STDLIB_WARN_ONLY=1)")
sys.exit(3 if mods else 0)
PY
