"""The short keys of Home Assistant's MQTT discovery, for the options Tektra reads.

Devices save bytes on the wire by sending `cmd_t` for `command_topic` and so on; this is the part
of Home Assistant's published table that the entities here use (unknown keys pass through)."""

from __future__ import annotations

from typing import Any

KEYS = {
    "act_t": "action_topic",
    "avty": "availability",
    "avty_mode": "availability_mode",
    "avty_t": "availability_topic",
    "avty_tpl": "availability_template",
    "bri_cmd_t": "brightness_command_topic",
    "bri_scl": "brightness_scale",
    "bri_stat_t": "brightness_state_topic",
    "bri_val_tpl": "brightness_value_template",
    "cmd_t": "command_topic",
    "cmd_tpl": "command_template",
    "cmps": "components",
    "curr_temp_t": "current_temperature_topic",
    "curr_temp_tpl": "current_temperature_template",
    "dev": "device",
    "dev_cla": "device_class",
    "json_attr_t": "json_attributes_topic",
    "max_temp": "max_temp",
    "min_temp": "min_temp",
    "mode_cmd_t": "mode_command_topic",
    "mode_stat_t": "mode_state_topic",
    "mode_stat_tpl": "mode_state_template",
    "o": "origin",
    "obj_id": "object_id",
    "opt": "optimistic",
    "p": "platform",
    "pct_cmd_t": "percentage_command_topic",
    "pl_avail": "payload_available",
    "pl_cls": "payload_close",
    "pl_lock": "payload_lock",
    "pl_not_avail": "payload_not_available",
    "pl_off": "payload_off",
    "pl_on": "payload_on",
    "pl_open": "payload_open",
    "pl_prs": "payload_press",
    "pl_stop": "payload_stop",
    "pl_unlk": "payload_unlock",
    "pos_clsd": "position_closed",
    "pos_open": "position_open",
    "pos_t": "position_topic",
    "pos_tpl": "position_template",
    "rgb_cmd_t": "rgb_command_topic",
    "set_pos_t": "set_position_topic",
    "stat_clsd": "state_closed",
    "stat_closing": "state_closing",
    "stat_locked": "state_locked",
    "stat_off": "state_off",
    "stat_on": "state_on",
    "stat_open": "state_open",
    "stat_opening": "state_opening",
    "stat_t": "state_topic",
    "stat_tpl": "state_template",
    "stat_unlocked": "state_unlocked",
    "stat_val_tpl": "state_value_template",
    "sup_clrm": "supported_color_modes",
    "t": "topic",
    "temp_cmd_t": "temperature_command_topic",
    "temp_stat_t": "temperature_state_topic",
    "temp_stat_tpl": "temperature_state_template",
    "temp_unit": "temperature_unit",
    "uniq_id": "unique_id",
    "unit_of_meas": "unit_of_measurement",
    "val_tpl": "value_template",
}
DEVICE_KEYS = {
    "cns": "connections",
    "cu": "configuration_url",
    "ids": "identifiers",
    "mf": "manufacturer",
    "mdl": "model",
    "sa": "suggested_area",
    "sw": "sw_version",
}


def expand(config: dict[str, Any]) -> dict[str, Any]:
    """`config` with its short keys written out and its `~` replaced in every topic, as Home
    Assistant reads it (a topic that starts with `~` has the base in front, one that ends with
    it has the base behind)."""
    out = {KEYS.get(key, key): value for key, value in config.items()}
    base = out.pop("~", None)
    if isinstance(out.get("device"), dict):
        device: dict[str, Any] = out["device"]
        out["device"] = {DEVICE_KEYS.get(k, k): v for k, v in device.items()}
    if isinstance(out.get("availability"), list):
        out["availability"] = [
            _with_base({KEYS.get(str(k), str(k)): v for k, v in item.items()}, base)
            for item in out["availability"]
            if isinstance(item, dict)
        ]
    return _with_base(out, base)


def _with_base(config: dict[str, Any], base: object) -> dict[str, Any]:
    if not isinstance(base, str):
        return config
    for key, value in config.items():
        if (key == "topic" or key.endswith("_topic")) and isinstance(value, str):
            if value.startswith("~"):
                config[key] = base + value[1:]
            elif value.endswith("~"):
                config[key] = value[:-1] + base
    return config
