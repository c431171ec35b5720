#!/bin/sh
# Runs once, when PostgreSQL initialises an empty data volume (docker-entrypoint-initdb.d).
#
# Two users, each owning only its own databases: `temporal` (Temporal's store and visibility) and
# `rte` (the engine's store). Neither is a superuser and neither can connect to the other's
# databases. Passwords come from the environment; the superuser (POSTGRES_PASSWORD) is used for
# nothing else. Changing a password later is done in PostgreSQL (ALTER ROLE), not here.
set -eu

: "${TEMPORAL_DB_PASSWORD:?set TEMPORAL_DB_PASSWORD}"
: "${RTE_DB_PASSWORD:?set RTE_DB_PASSWORD}"

# psql variables (:'x' literals, :"x" identifiers) quote whatever the values contain.
psql -v ON_ERROR_STOP=1 --no-psqlrc --username "${POSTGRES_USER:-postgres}" --dbname "${POSTGRES_DB:-postgres}" \
    -v temporal_user="${TEMPORAL_DB_USER:-temporal}" -v temporal_password="$TEMPORAL_DB_PASSWORD" \
    -v temporal_db="${TEMPORAL_DB_NAME:-temporal}" -v visibility_db="${TEMPORAL_VISIBILITY_DB_NAME:-temporal_visibility}" \
    -v rte_user="${RTE_DB_USER:-rte}" -v rte_password="$RTE_DB_PASSWORD" -v rte_db="${RTE_DB_NAME:-rte}" <<'SQL'
CREATE ROLE :"temporal_user" LOGIN PASSWORD :'temporal_password';
CREATE ROLE :"rte_user" LOGIN PASSWORD :'rte_password';
CREATE DATABASE :"temporal_db" OWNER :"temporal_user";
CREATE DATABASE :"visibility_db" OWNER :"temporal_user";
CREATE DATABASE :"rte_db" OWNER :"rte_user";
-- Every role may connect to every database by default (PUBLIC); only owners may here.
REVOKE ALL ON DATABASE :"temporal_db" FROM PUBLIC;
REVOKE ALL ON DATABASE :"visibility_db" FROM PUBLIC;
REVOKE ALL ON DATABASE :"rte_db" FROM PUBLIC;
SQL
echo "created users ${TEMPORAL_DB_USER:-temporal} and ${RTE_DB_USER:-rte} and their databases"
