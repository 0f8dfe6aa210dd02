#!/bin/sh
# Create ./secrets for docker-compose.yml: a random password per MQTT user and for Grafana's
# admin, and empty files for the Slack tokens, the router password, the AWS keys and the alarm
# code (fill those in; an empty alarm_code means no code). Existing files are never overwritten, so running it again only adds what is missing.
#
#   ./docker/make-secrets.sh [SECRETS_DIR]      (default: ./secrets next to docker-compose.yml)
set -eu

here=$(cd "$(dirname "$0")/.." && pwd)
dir=${1:-"$here/secrets"}
umask 077
mkdir -p "$dir"
chmod 700 "$dir"
# never let git pick the folder up (a .gitignore inside it that ignores everything, itself too)
[ -e "$dir/.gitignore" ] || printf '*\n' >"$dir/.gitignore"

random_password() {
    # 32 URL-safe characters from the kernel's CSPRNG
    LC_ALL=C tr -dc 'A-Za-z0-9_-' </dev/urandom | head -c 32
}

created=""
for user in camera detector slack_gateway presence uploader ptz homeassistant nodered admin; do
    file="$dir/mqtt_password_$user"
    if [ ! -e "$file" ]; then
        random_password >"$file"
        created="$created mqtt_password_$user"
    fi
done
if [ ! -e "$dir/grafana_admin_password" ]; then
    random_password >"$dir/grafana_admin_password"
    created="$created grafana_admin_password"
fi
for name in slack_bot_token slack_signing_secret slack_app_token router_password \
    aws_access_key_id aws_secret_access_key alarm_code; do
    if [ ! -e "$dir/$name" ]; then
        : >"$dir/$name"
        created="$created $name"
    fi
done

# Inside the containers the services read their files as uid 10001, so the files are 644; the
# folder stays 700, so other users of the host cannot reach them.
chmod 644 "$dir"/* "$dir/.gitignore" 2>/dev/null || true
chmod 700 "$dir"

echo "secrets in $dir"
if [ -n "$created" ]; then echo "created:$created"; fi
echo "fill in: slack_bot_token, slack_signing_secret (and slack_app_token for Socket Mode),"
echo "         aws_access_key_id + aws_secret_access_key for S3 uploads,"
echo "         router_password for the router presence backend,"
echo "         alarm_code for a disarm code on alarm/set (Home Assistant, Node-RED)."
echo "Grafana login: admin / $(cat "$dir/grafana_admin_password")"
