#!/bin/sh
# The clickhouse-users job: the users `vigie deploy render` wrote (ministry, one per CSS), each
# holding its role; runs after `vigie migrate` created the roles. Idempotent.
#   $1  secrets/clickhouse/users.sql
set -eu
users_sql=${1:?usage: create-users.sh USERS_SQL}
: "${CLICKHOUSE_HOST:=clickhouse}"
: "${VIGIE_CLICKHOUSE_WRITER_PASSWORD:?the writer password is needed to create users}"
clickhouse-client --host "$CLICKHOUSE_HOST" --user vigie_writer \
  --password "$VIGIE_CLICKHOUSE_WRITER_PASSWORD" --multiquery < "$users_sql"
echo "clickhouse users created"
