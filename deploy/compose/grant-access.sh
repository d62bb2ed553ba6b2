#!/bin/sh
# Run once by the kafka-access service, as Kafka's admin user: creates each Rollwatch service's Kafka user with
# its role's ACLs (`rollwatch access grant`) and leaves only that user's password, as the file the service
# reads through ROLLWATCH_SASL_PASSWORD_FILE, in a volume mounted by that service alone. The rest of the env
# file `grant` writes (bootstrap servers, protocol, CA file, user name) is in docker-compose.yml already.
#
# A user whose password file exists is left alone, so `docker compose up` again never changes the password of
# a running worker. To rotate: `docker compose run --rm kafka-access rotate`, then restart the services.
set -eu
umask 077
rotate=${1:-}
grant() {
  role=$1 user=$2 directory=$3
  if [ -s "$directory/sasl_password" ] && [ "$rotate" != rotate ]; then
    echo "$user: already granted"
    return
  fi
  scratch=$(mktemp -d)
  rollwatch access grant --role "$role" --user "$user" --output "$scratch/$user.env"
  sed -n 's/^ROLLWATCH_SASL_PASSWORD=//p' "$scratch/$user.env" > "$directory/sasl_password.new"
  rm -rf "$scratch"
  test -s "$directory/sasl_password.new"
  # The Rollwatch image's user (uid 10001) reads it; nobody else.
  chown 10001:10001 "$directory/sasl_password.new"
  chmod 0400 "$directory/sasl_password.new"
  mv "$directory/sasl_password.new" "$directory/sasl_password"
}
grant worker rollwatch-worker /run/rollwatch/worker
grant register rollwatch-register /run/rollwatch/register
grant ops-metrics rollwatch-dlq-exporter /run/rollwatch/dlq-exporter
