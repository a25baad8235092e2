#!/usr/bin/with-contenv bashio
# shellcheck shell=bash
# ==================================================================================================
# Turns the add-on's options (/data/options.json) and the Supervisor's MQTT service into our config
# file (/data/config.yaml), then execs the bridge. It does nothing else: the bridge checks the config
# itself and names any wrong key.
#
# Secrets never go into the config file. They are exported as environment variables and the file
# refers to them as ${ENPHASE_CLIENT_SECRET} and so on, which the bridge expands. So the file can be
# printed in the log (it is, with log_level debug) and shared when asking for help.
#
# The table OPTION -> CONFIG KEY below is the whole mapping; tests/addon.rs checks its result.
# Outside Home Assistant (the tests), these variables stand in for the Supervisor:
#   ENPHASE_ADDON_DATA       the folder with options.json; config.yaml goes there too   (/data)
#   ENPHASE_ADDON_MQTT_HOST  with _PORT, _USERNAME, _PASSWORD, _SSL: the MQTT service
#   ENPHASE_ADDON_BIN        the program to exec                                         (enphase-mqtt)
# ==================================================================================================
set -euo pipefail

data="${ENPHASE_ADDON_DATA:-/data}"
options="${data}/options.json"
config="${data}/config.yaml"
bin="${ENPHASE_ADDON_BIN:-enphase-mqtt}"

have_bashio() { declare -F bashio::log.info >/dev/null 2>&1; }
info() {
    if have_bashio; then bashio::log.info "$*"; else printf 'enphase-mqtt add-on: %s\n' "$*" >&2; fi
}
fatal() {
    if have_bashio; then bashio::log.fatal "$*"; else printf 'enphase-mqtt add-on: error: %s\n' "$*" >&2; fi
    exit 1
}

[[ -r "${options}" ]] || fatal "cannot read the add-on options at ${options}"

# An option's value as text; nothing when it is absent, null or empty.
opt() { jq -r --arg k "$1" '.[$k] | if . == null or . == "" then empty else tostring end' "${options}"; }

missing=()
for key in client_id client_secret api_key; do
    [[ -n "$(opt "${key}")" ]] || missing+=("${key}")
done
if ((${#missing[@]} > 0)); then
    fatal "set ${missing[*]} on the add-on's Configuration tab (from your application at the Enphase developer portal)"
fi

# The broker: Home Assistant's MQTT service (the Mosquitto broker add-on), unless mqtt_host names
# another one; then none of the service's values are used, its login least of all.
svc_host="" svc_port="" svc_user="" svc_pass="" svc_ssl=""
if [[ -n "$(opt mqtt_host)" ]]; then
    :
elif [[ -n "${ENPHASE_ADDON_MQTT_HOST:-}" ]]; then
    svc_host="${ENPHASE_ADDON_MQTT_HOST}"
    svc_port="${ENPHASE_ADDON_MQTT_PORT:-}"
    svc_user="${ENPHASE_ADDON_MQTT_USERNAME:-}"
    svc_pass="${ENPHASE_ADDON_MQTT_PASSWORD:-}"
    svc_ssl="${ENPHASE_ADDON_MQTT_SSL:-}"
elif have_bashio && bashio::services.available mqtt; then
    svc_host="$(bashio::services mqtt host)"
    svc_port="$(bashio::services mqtt port)"
    svc_user="$(bashio::services mqtt username)"
    svc_pass="$(bashio::services mqtt password)"
    svc_ssl="$(bashio::services mqtt ssl)"
else
    fatal "no MQTT broker: install and start the Mosquitto broker add-on, or set mqtt_host"
fi

# shellcheck disable=SC2016 # ${…} in the jq program is text for the config file, not for bash.
program='
$opts[0] as $o
# An option, or null when it is absent, null or "".
| def v($k): $o[$k] | if . == null or . == "" then null else . end;
[
    # option                    config key                       secret: environment variable
    ["client_id",               "enphase.client_id"],
    ["client_secret",           "enphase.client_secret",         "ENPHASE_CLIENT_SECRET"],
    ["api_key",                 "enphase.api_key",               "ENPHASE_API_KEY"],
    ["plan",                    "enphase.plan"],
    ["systems",                 "enphase.systems"],
    ["auth_flow",               "enphase.auth.flow"],
    ["enlighten_username",      "enphase.auth.username"],
    ["enlighten_password",      "enphase.auth.password",         "ENPHASE_PASSWORD"],
    ["hits_per_minute",         "enphase.hits_per_minute"],
    ["hits_per_month",          "enphase.hits_per_month"],
    ["min_poll_interval_secs",  "enphase.min_poll_interval_secs"],
    ["stale_after_secs",        "enphase.stale_after_secs"],
    ["request_timeout_secs",    "enphase.request_timeout_secs"],
    ["base_url",                "enphase.base_url"],
    ["mqtt_host",               "mqtt.host"],
    ["mqtt_port",               "mqtt.port"],
    ["mqtt_username",           "mqtt.username"],
    ["mqtt_password",           "mqtt.password",                 "MQTT_PASSWORD"],
    ["mqtt_tls",                "mqtt.tls"],
    ["mqtt_client_id",          "mqtt.client_id"],
    ["base_topic",              "mqtt.base_topic"],
    ["discovery_prefix",        "mqtt.discovery_prefix"],
    ["discovery",               "mqtt.discovery"],
    ["discovery_mode",          "mqtt.discovery_mode"]
] as $map
| if $mode == "env" then
    # The secrets, as shell assignments.
    $map[] | select(length == 3 and v(.[0]) != null)
    | "export \(.[2])=\(v(.[0]) | tostring | @sh)"
  else
    reduce ($map[] | select(v(.[0]) != null)) as $m ({};
        setpath($m[1] | split("."); if ($m | length) == 3 then "${\($m[2])}" else v($m[0]) end))
    | if v("mqtt_host") == null then
        .mqtt.host = $svc.host
        | if .mqtt.port == null and $svc.port != "" then .mqtt.port = ($svc.port | tonumber) else . end
        | if .mqtt.username == null and $svc.username != "" then .mqtt.username = $svc.username else . end
        | if .mqtt.password == null and $svc.password != "" then .mqtt.password = "${MQTT_PASSWORD}" else . end
        | if .mqtt.tls == null and $svc.ssl == "true" then .mqtt.tls = true else . end
      else . end
    # The page behind the add-on'"'"'s ingress (ingress_port in config.yaml).
    | .http.listen = "0.0.0.0:8099"
    | .state_dir = $state_dir
  end
'
# The service's values for the jq program; of the password only whether there is one (it goes to
# the bridge through the environment, not through any command line).
svc="$(jq -n --arg host "${svc_host}" --arg port "${svc_port}" --arg username "${svc_user}" \
    --arg password "${svc_pass:+set}" --arg ssl "${svc_ssl}" '$ARGS.named')"
generate() { # MODE
    jq -n -r --arg mode "$1" --slurpfile opts "${options}" --argjson svc "${svc}" \
        --arg state_dir "${data}/state" "${program}"
}

exports="$(generate env)"
eval "${exports}"
if [[ -z "$(opt mqtt_password)" && -n "${svc_pass}" ]]; then
    export MQTT_PASSWORD="${svc_pass}"
fi
log_level="$(opt log_level)"
export ENPHASE_MQTT_LOG="${log_level:-info}"

umask 077
{
    echo "# Written by the add-on from its options at every start: edit the options, not this file."
    echo "# Secrets are \${NAME} references to the environment, never the secrets themselves."
    generate config
} >"${config}.tmp"
mv -f "${config}.tmp" "${config}"
info "Wrote ${config}; starting enphase-mqtt (web page on the add-on's ingress, port 8099)"
if [[ "${ENPHASE_MQTT_LOG}" == debug || "${ENPHASE_MQTT_LOG}" == trace ]]; then
    info "Config (secrets are \${…} references):"
    cat "${config}" >&2
fi

exec "${bin}" run --config "${config}"
