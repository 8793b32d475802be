#!/usr/bin/env bash
# Prints the path of a headless Chromium for the browser tests, installing Debian's `chromium`
# package with apt-get when there is none (Playwright's own browser download is not used: the
# tests point Playwright's Python package at this binary). FUNDEDFLOW_CHROMIUM wins if set.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ -n ${FUNDEDFLOW_CHROMIUM:-} && -x $FUNDEDFLOW_CHROMIUM ]]; then
	echo "$FUNDEDFLOW_CHROMIUM"
	exit 0
fi
find_chromium() {
	local c
	for c in chromium chromium-browser google-chrome-stable google-chrome; do
		if command -v "$c" >/dev/null 2>&1; then
			command -v "$c"
			return 0
		fi
	done
	return 1
}
if ! find_chromium; then
	if [[ $(id -u) -ne 0 ]]; then
		echo "browser: no chromium found; run as root or: sudo apt-get install -y chromium" >&2
		exit 1
	fi
	mkdir -p .stack/logs
	echo "browser: installing chromium with apt-get" >&2
	apt-get update -qq >>.stack/logs/apt-browser.log 2>&1
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium \
		>>.stack/logs/apt-browser.log 2>&1 || {
		tail -n 30 .stack/logs/apt-browser.log >&2
		exit 1
	}
	find_chromium
fi
