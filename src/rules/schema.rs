//! The JSON Schema of a rules file, for editors (`yaml-language-server`). Describes
//! the shape only; cross-file checks are `marketgate validate`'s job.

use serde_json::{json, Value};

/// JSON Schema (draft 2020-12) of one `regions/*.yaml` file.
pub fn rules_file_schema() -> Value {
    let status = json!({
        "enum": ["served", "limited", "withdrawn"],
        "description": "served: everything on; limited: served with features off; withdrawn: not served"
    });
    let on_off = json!({
        "description": "on or off",
        "oneOf": [{"type": "boolean"}, {"enum": ["on", "off"]}]
    });
    let timestamp = json!({
        "type": "string",
        "description": "RFC 3339 instant with an explicit offset, e.g. 2027-01-01T00:00:00+03:00; naive times are errors",
        "pattern": "^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}(:\\d{2}(\\.\\d+)?)?(Z|[+-]\\d{2}:\\d{2})$"
    });
    // As `raw::check_reference`: an http(s) URL of RFC 3986 characters (the host is
    // checked by `validate` only).
    let url = json!({
        "type": "string",
        "description": "a link to the law, proposal or decision: an http(s) URL with a host; percent-encode spaces, quotes, angle brackets and non-ASCII characters",
        "pattern": "^[Hh][Tt][Tt][Pp][Ss]?://[A-Za-z0-9._~:/?#\\[\\]@!$&'()*+,;=%-]+$"
    });
    // Apart: one `json!` this deep passes the macro's recursion limit.
    let transparency = json!({
        "type": "object",
        "description": "global file: what the public transparency page shows",
        "additionalProperties": false,
        "properties": {
            "public": {"type": "boolean", "default": true, "description": "whether demands and changes without their own `public` are published"}
        }
    });
    let demand_public = json!({"type": "boolean", "description": "shown on the transparency page; default: the global file's `transparency.public`"});
    let change_public = json!({"type": "boolean", "description": "shown on the transparency page (shadow changes never are); default: the global file's `transparency.public`"});
    let changes = json!({
                "type": "array",
                "items": {
                    "type": "object",
                    "additionalProperties": false,
                    "required": ["id", "at", "reason"],
                    "properties": {
                        "id": {"type": "string", "description": "unique across the rule set; also the rollout hash seed"},
                        "at": timestamp,
                        "status": status,
                        "features": {"type": "object", "additionalProperties": on_off},
                        "reason": {"type": "string"},
                        "reference": url,
                        "rollout": {
                            "type": "object",
                            "additionalProperties": false,
                            "required": ["percent"],
                            "properties": {"percent": {"type": "number", "minimum": 0, "maximum": 100, "multipleOf": 0.01}}
                        },
                        "mode": {"enum": ["enforce", "shadow"], "description": "shadow: evaluated and counted, never applied"},
                        "public": change_public
                    }
                }
    });
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://marketgate.invalid/schema/rules-file.json",
        "title": "marketgate rules file (regions/*.yaml)",
        "description": "One YAML document per file. The global file (no `jurisdiction`) declares features, responses, groups and the `unknown` policy; every other file holds the rules of one jurisdiction.",
        "type": "object",
        "additionalProperties": false,
        "properties": {
            "jurisdiction": {
                "type": "string",
                "description": "`*` (global), a declared group (`EU`), an ISO 3166-1 alpha-2 code (`FR`) or an ISO 3166-2 code (`US-CA`)",
                "pattern": "^(\\*|[A-Za-z][A-Za-z0-9_-]*)$"
            },
            "name": {"type": "string", "description": "human name of the jurisdiction"},
            "description": {"type": "string"},
            "status": status,
            "features": {
                "type": "object",
                "description": "global file: feature declarations; elsewhere: `feature: on|off`",
                "additionalProperties": {
                    "oneOf": [
                        on_off,
                        {
                            "type": "object",
                            "additionalProperties": false,
                            "properties": {
                                "default": on_off,
                                "paths": {"type": "array", "items": {"type": "string", "pattern": "^/"}, "description": "URL path prefixes that belong to the feature"},
                                "description": {"type": "string"}
                            }
                        }
                    ]
                }
            },
            "responses": {
                "type": "object",
                "description": "global file: how the company answers each kind of demand",
                "additionalProperties": {
                    "oneOf": [
                        {"enum": ["withdraw", "comply"], "description": "withdraw is a red line: leave the market"},
                        {
                            "type": "object",
                            "additionalProperties": false,
                            "required": ["disable"],
                            "properties": {"disable": {"type": "array", "items": {"type": "string"}}}
                        }
                    ]
                }
            },
            "groups": {
                "type": "object",
                "description": "global file: named groups of ISO 3166-1 countries, in declaration order",
                "additionalProperties": {"type": "array", "items": {"type": "string", "pattern": "^[A-Z]{2}$"}}
            },
            "unknown": {
                "type": "object",
                "description": "global file: the policy for addresses without a GeoIP country",
                "additionalProperties": false,
                "properties": {
                    "status": status,
                    "features": {"type": "object", "additionalProperties": on_off}
                }
            },
            "transparency": transparency,
            "demands": {
                "type": "array",
                "items": {
                    "type": "object",
                    "additionalProperties": false,
                    "required": ["id", "kind", "state", "effective"],
                    "properties": {
                        "id": {"type": "string", "description": "unique across the rule set"},
                        "kind": {"type": "string", "description": "a key of `responses` (encryption_backdoor, data_localization, ...)"},
                        "state": {"enum": ["proposed", "enacted", "rejected", "repealed"], "description": "only enacted demands past `effective` are in force"},
                        "effective": timestamp,
                        "reference": url,
                        "law": {"type": "string", "description": "the law or instrument, in words"},
                        "description": {"type": "string"},
                        "public": demand_public
                    }
                }
            },
            "changes": changes
        }
    })
}
