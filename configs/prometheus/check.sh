#!/bin/sh
# Validates the Prometheus configuration and alert rules with promtool:
#   promtool check config prometheus.yml   (also checks the rule files it names)
#   promtool check rules  alerts.yml
#   promtool test rules   alerts_test.yml  (the alerts fire when they should)
# Without promtool it tries `apt-get install -y prometheus` (Debian/Ubuntu, as root);
# if that is impossible it prints a warning and exits 0, so CI on other hosts skips
# the check instead of failing. Set PROMTOOL to use a specific binary.
set -eu
cd "$(dirname "$0")"

promtool="${PROMTOOL:-}"
if [ -z "$promtool" ]; then
	promtool="$(command -v promtool || true)"
fi
if [ -z "$promtool" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
	echo "check.sh: promtool not found; installing the Debian package prometheus" >&2
	if DEBIAN_FRONTEND=noninteractive apt-get install -y -q prometheus >/dev/null 2>&1 ||
		{ apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q prometheus >/dev/null 2>&1; }; then
		promtool="$(command -v promtool || true)"
	fi
fi
if [ -z "$promtool" ]; then
	echo "check.sh: WARNING: promtool is not installed and cannot be installed here; skipping the Prometheus config and rules checks" >&2
	exit 0
fi

"$promtool" check config prometheus.yml
"$promtool" check rules alerts.yml
"$promtool" test rules alerts_test.yml
