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
        "description": "RFC 3339 instant with an explicit offset, e.g. 2027-01-01T00:00:00+03:00, optionally with the named zone it is in, e.g. 2027-07-10T09:00:00+02:00[Europe/Paris] (the offset must be the zone's then); naive times are errors",
        "pattern": "^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}(:\\d{2}(\\.\\d+)?)?(Z|[+-]\\d{2}:\\d{2})(\\[!?[A-Za-z0-9_/+-]+\\])?$"
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
    let signals = json!({
        "type": "object",
        "description": "global file: which signals of a request's market count and how their decisions combine",
        "additionalProperties": false,
        "properties": {
            "count": {
                "type": "array",
                "description": "the signals that count (default: all): address (GeoIP, or a trusted CDN's country header; must be listed), phone (a phone number's country), declared (a country the user declared)",
                "items": {"enum": ["address", "phone", "declared"]},
                "contains": {"const": "address"}
            },
            "combine": {"enum": ["strictest"], "default": "strictest", "description": "strictest: the most restrictive of the decisions for each signal's jurisdiction (withdrawn over limited over served; a feature off for one is off)"}
        }
    });
    let demand_public = json!({"type": "boolean", "description": "shown on the transparency page; default: the global file's `transparency.public`"});
    let change_public = json!({"type": "boolean", "description": "shown on the transparency page (shadow changes never are); default: the global file's `transparency.public`"});
    let percent = json!({"type": "number", "minimum": 0, "maximum": 100, "multipleOf": 0.01});
    let rollout = json!({
        "type": "object",
        "description": "a staged change: `percent` of the rollout keys from `at`, or `steps` that raise the percent over time (each step's keys stay in)",
        "additionalProperties": false,
        "oneOf": [{"required": ["percent"]}, {"required": ["steps"]}],
        "properties": {
            "percent": percent,
            "steps": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "additionalProperties": false,
                    "required": ["at", "percent"],
                    "properties": {"at": timestamp, "percent": percent}
                }
            }
        }
    });
    let trigger = json!({"enum": ["law", "order"], "description": "law: the response fires while the law is in force; order: only while an order served under it is in effect"});
    let response = json!({
        "oneOf": [
            {"enum": ["withdraw", "comply"], "description": "withdraw is a red line: leave the market"},
            {
                "type": "object",
                "additionalProperties": false,
                "required": ["disable"],
                "properties": {"disable": {"type": "array", "items": {"type": "string"}}, "trigger": trigger}
            },
            {
                "type": "object",
                "additionalProperties": false,
                "required": ["action"],
                "properties": {"action": {"enum": ["withdraw", "comply"]}, "trigger": trigger}
            }
        ]
    });
    let states = json!(["proposed", "enacted", "in_force", "amended", "rejected", "repealed"]);
    let history = json!({
        "type": "array",
        "description": "the law's dated states in time order; `in_force` and `amended` make it apply",
        "items": {
            "type": "object",
            "additionalProperties": false,
            "required": ["state", "at"],
            "properties": {"state": {"enum": states}, "at": timestamp, "reference": url, "note": {"type": "string"}}
        }
    });
    let orders = json!({
        "type": "array",
        "description": "orders or notices served on the company under the law; in effect from `received` until `withdrawn` (a challenge does not suspend one)",
        "items": {
            "type": "object",
            "additionalProperties": false,
            "required": ["id", "received"],
            "properties": {
                "id": {"type": "string"},
                "received": timestamp,
                "challenged": timestamp,
                "withdrawn": timestamp,
                "reference": url,
                "description": {"type": "string"}
            }
        }
    });
    let date = json!({"type": "string", "pattern": "^\\d{4}-\\d{2}-\\d{2}$", "description": "a day, YYYY-MM-DD"});
    let sources = json!({
        "type": "array",
        "items": {
            "type": "object",
            "additionalProperties": false,
            "required": ["url"],
            "properties": {
                "url": url,
                "archived": url,
                "accessed": date,
                "title": {"type": "string"},
                "original_title": {"type": "string", "description": "the title in the original language"}
            }
        }
    });
    let demands = json!({
        "type": "array",
        "items": {
            "type": "object",
            "additionalProperties": false,
            "required": ["id", "kind"],
            "oneOf": [{"required": ["state", "effective"]}, {"required": ["history"]}],
            "properties": {
                "id": {"type": "string", "description": "unique across the rule set"},
                "kind": {"type": "string", "description": "a key of `responses` (encryption_backdoor, data_localization, ...)"},
                "state": {"enum": ["proposed", "enacted", "in_force", "rejected"], "description": "shorthand for a history: enacted (or in_force) applies from `effective`; proposed plans `effective`; rejected at `effective`. A repealed or amended law needs `history`"},
                "effective": timestamp,
                "history": history,
                "orders": orders,
                "response": response,
                "reference": url,
                "law": {"type": "string", "description": "the law or instrument, in words"},
                "description": {"type": "string"},
                "sources": sources,
                "owner": {"type": "string", "description": "who in the policy team answers for this entry"},
                "ticket": {"type": "string", "description": "the tracking ticket"},
                "review_by": date,
                "public": demand_public
            }
        }
    });
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
                        "rollout": rollout,
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
                "additionalProperties": response
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
            "signals": signals,
            "demands": demands,
            "changes": changes
        }
    })
}
