#!/bin/sh
# Starts one Kafka node of the compose stack. KRaft can only create SCRAM users before the cluster exists
# (`kafka-storage format --add-scram`), and the image's own start script formats without them, so the node's
# storage is formatted here first, with the admin user whose password is the kafka_admin_password secret;
# the image's script then finds it formatted (it formats with --ignore-formatted) and starts the node.
set -eu
if [ ! -f "$KAFKA_LOG_DIRS/meta.properties" ]; then
  password=$(cat /run/secrets/kafka_admin_password)
  if [ -z "$password" ]; then
    echo "kafka-node: set KAFKA_ADMIN_PASSWORD (letters, digits, - and _) in .env" >&2
    exit 1
  fi
  config=$(mktemp)
  # Just what `format` needs to know about this node; the full configuration comes from KAFKA_* variables.
  cat > "$config" <<PROPERTIES
process.roles=broker,controller
node.id=$KAFKA_NODE_ID
controller.quorum.voters=$KAFKA_CONTROLLER_QUORUM_VOTERS
controller.listener.names=CONTROLLER
listeners=INTERNAL://:9094,CONTROLLER://:9093
inter.broker.listener.name=INTERNAL
listener.security.protocol.map=INTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$KAFKA_LOG_DIRS
PROPERTIES
  /opt/kafka/bin/kafka-storage.sh format --cluster-id "$CLUSTER_ID" --config "$config" \
    --add-scram "SCRAM-SHA-512=[name=admin,password=$password]"
  rm -f "$config"
fi
exec /etc/kafka/docker/run
