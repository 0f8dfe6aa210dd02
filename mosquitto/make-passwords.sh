#!/bin/sh
# Build Mosquitto's password file from secret files, one per broker user.
#
#   make-passwords.sh [SECRETS_DIR] [PASSWORD_FILE]
#
# For every user below, SECRETS_DIR/mqtt_password_<user> (dashes as underscores) holds its
# password. Required users must have one; optional users are added when their file exists.
# Passwords never appear on a command line: a plain "user:password" file is written with mode
# 600 and hashed in place by `mosquitto_passwd -U`, then moved over PASSWORD_FILE atomically.
# In docker-compose.yml the broker runs this before it starts, so rotating a password is:
# edit the secret file, `docker compose restart mosquitto <service>`.
set -eu

SECRETS_DIR=${1:-/run/secrets}
PASSWORD_FILE=${2:-/mosquitto/data/passwd}
REQUIRED_USERS=${HOMESEC_MQTT_USERS:-"camera detector slack-gateway presence uploader ptz admin"}
OPTIONAL_USERS=${HOMESEC_MQTT_OPTIONAL_USERS:-"homeassistant nodered"}

umask 077
tmp="${PASSWORD_FILE}.tmp.$$"
trap 'rm -f "$tmp"' EXIT
: >"$tmp"

add_user() {
    user=$1
    required=$2
    file="$SECRETS_DIR/mqtt_password_$(printf '%s' "$user" | tr '-' '_')"
    if [ ! -s "$file" ]; then
        if [ "$required" = yes ]; then
            echo "make-passwords: missing or empty $file (password of MQTT user $user)" >&2
            return 1
        fi
        echo "make-passwords: $file not found; MQTT user $user not created"
        return 0
    fi
    # first line, without a trailing CR (a file saved on Windows)
    password=$(head -n 1 "$file" | tr -d '\r\n')
    case "$user" in *:*)
        echo "make-passwords: user name $user contains ':'" >&2
        return 1
        ;;
    esac
    printf '%s:%s\n' "$user" "$password" >>"$tmp"
}

status=0
for user in $REQUIRED_USERS; do add_user "$user" yes || status=1; done
for user in $OPTIONAL_USERS; do add_user "$user" no || status=1; done
if [ "$status" -ne 0 ]; then
    echo "make-passwords: password file not written" >&2
    exit 1
fi

mosquitto_passwd -U "$tmp"
if id mosquitto >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    chown mosquitto:mosquitto "$tmp"
fi
chmod 600 "$tmp"
mv -f "$tmp" "$PASSWORD_FILE"
trap - EXIT
echo "make-passwords: wrote $PASSWORD_FILE ($(wc -l <"$PASSWORD_FILE") users)"
