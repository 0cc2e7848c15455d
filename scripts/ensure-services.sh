#!/usr/bin/env bash
# Start PostgreSQL and Redis from Debian's packages when they are not answering.
set -euo pipefail
answers() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
need_apt=()
command -v pg_ctlcluster >/dev/null || need_apt+=(postgresql)
command -v redis-server >/dev/null || need_apt+=(redis-server)
if ! answers 5432 || ! answers 6379; then
  if [ ${#need_apt[@]} -gt 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
  fi
fi
if ! answers 5432; then
  version=$(ls /etc/postgresql | sort -n | tail -1)
  conf=/etc/postgresql/$version/main/pg_hba.conf
  grep -q "127.0.0.1/32 *trust" "$conf" 2>/dev/null || \
    sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust\nlocal all all trust' "$conf"
  pg_ctlcluster --skip-systemctl-redirect "$version" main start
fi
if ! answers 6379; then
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
fi
for _ in $(seq 1 30); do answers 5432 && answers 6379 && break; sleep 1; done
answers 5432 && answers 6379
exists=$(psql -h 127.0.0.1 -U postgres -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname='test'")
[ "$exists" = 1 ] || psql -h 127.0.0.1 -U postgres -d postgres -c "CREATE DATABASE test"
echo "PostgreSQL and Redis are answering."
