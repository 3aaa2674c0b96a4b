#!/bin/sh
# Writes ./.env for `docker compose` with random secrets when it does not exist:
# the API token, the Grafana admin password and the Kafka UI password (the stack
# has no default credentials). An existing .env is left as it is. Prints where
# the secrets are, never the secrets.
set -eu
cd "$(dirname "$0")/.."
if [ -f .env ]; then
	exit 0
fi
secret() { head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
umask 077
{
	echo "# written by configs/compose-env.sh; keep it out of version control"
	echo "ORDERS_API_TOKEN=$(secret)"
	echo "GRAFANA_ADMIN_PASSWORD=$(secret)"
	echo "KAFKA_UI_PASSWORD=$(secret)"
} > .env
echo "compose-env: wrote .env with a random API token and admin passwords (user admin); read them there" >&2
