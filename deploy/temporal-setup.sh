#!/bin/sh
# Prepares the Temporal namespace the engine runs in: creates it when missing, then registers the
# engine's search attributes, given as arguments (Name=Type ...).
#
# Every failure fails the job (and so the start of workers and API, which wait for it): Temporal
# unreachable, an attribute registered with another type, no slot left for one. What already exists
# with the right type is reported and left alone, so running it again is safe.
set -eu

: "${TEMPORAL_ADDRESS:?set TEMPORAL_ADDRESS (host:port of the Temporal frontend)}"
namespace="${NAMESPACE:-default}"
retention="${NAMESPACE_RETENTION:-30d}"
if [ "$#" -eq 0 ]; then
    echo "usage: $0 Name=Type ..." >&2
    exit 2
fi

# A new namespace takes a moment to reach every service: retry a few times, then fail loudly.
retry() {
    attempt=1
    until output=$("$@" 2>&1); do
        if [ "$attempt" -ge "${RETRIES:-10}" ]; then
            echo "failed after $attempt attempts: $*" >&2
            echo "$output" >&2
            return 1
        fi
        attempt=$((attempt + 1))
        sleep "${RETRY_DELAY_S:-3}"
    done
    [ -z "$output" ] || echo "$output"
}

if temporal operator namespace describe --namespace "$namespace" >/dev/null 2>&1; then
    echo "namespace $namespace: exists"
else
    retry temporal operator namespace create --namespace "$namespace" --retention "$retention" >/dev/null
    echo "namespace $namespace: created (retention $retention)"
fi

registered=$(retry temporal operator search-attribute list --namespace "$namespace" --output json)
for pair in "$@"; do
    name=${pair%%=*}
    type=${pair#*=}
    wanted=$(echo "$type" | tr '[:lower:]' '[:upper:]')
    # The JSON lists one attribute a line: "Name": "INDEXED_VALUE_TYPE_KEYWORD"
    have=$(echo "$registered" | sed -n "s/^ *\"$name\": *\"INDEXED_VALUE_TYPE_\([A-Z_]*\)\".*/\1/p")
    if [ "$have" = "$wanted" ]; then
        echo "search attribute $name ($type): already registered"
    elif [ -n "$have" ]; then
        echo "search attribute $name is registered as $have, but the engine needs $type" >&2
        exit 1
    else
        retry temporal operator search-attribute create --namespace "$namespace" --name "$name" --type "$type" >/dev/null
        echo "search attribute $name ($type): registered"
    fi
done
