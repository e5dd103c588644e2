#!/usr/bin/env bash
# Every 10 s until killed: the cumulative statistics of every drop database (the
# transactions and rows of pg_stat_database; each table's scans and writes from
# pg_stat_user_tables), appended to OUT.db and OUT.tables as `epoch|database|...`.
# A sequential scan where an index was meant, or a table written far more than the
# requests explain, shows in the differences (scripts/profile/summary.py tables).
# Usage: scripts/profile/pg-stats.sh OUT
set -uo pipefail
out=${1:?usage: pg-stats.sh OUT}
pg=(psql -U postgres -h 127.0.0.1 -AtF'|')
while true; do
  t=$(date +%s)
  "${pg[@]}" -d postgres -c "SELECT $t, datname, xact_commit, tup_returned, tup_fetched, \
    tup_inserted, tup_updated, tup_deleted FROM pg_stat_database WHERE datname LIKE 'drop%'" \
    >>"$out.db" 2>/dev/null
  for db in $("${pg[@]}" -d postgres -c "SELECT datname FROM pg_database WHERE datname LIKE 'drop%'" 2>/dev/null); do
    "${pg[@]}" -d "$db" -c "SELECT $t, '$db', relname, seq_scan, seq_tup_read, idx_scan, \
      n_tup_ins, n_tup_upd, n_tup_del FROM pg_stat_user_tables" >>"$out.tables" 2>/dev/null
  done
  sleep 10
done
