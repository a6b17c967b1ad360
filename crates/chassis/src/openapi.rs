//! The parts of every OpenAPI document that the chassis decides.
//!
//! Two jobs, so that a service's document says exactly what its code does:
//! - **Schemas of validated values.** A rule that the code checks and the
//!   schema that declares it live side by side here ([`text`], the
//!   character classes) or next to their parser (a service's domain types),
//!   so a fuzzer that generates from the document meets the same rules.
//! - **[`complete`]**: every answer the layers around a handler can give —
//!   the JSON extractor's 400/413/415, the token check's 401, the query
//!   parser's 400 — added to each operation that goes through them.

use dure_contracts::FieldError;
use serde_json::{Value, json};
use utoipa::openapi::schema::{KnownFormat, Object, ObjectBuilder, SchemaFormat, SchemaType, Type};

/// `char::is_whitespace` as a regex class body. Not `\s`: regex engines
/// disagree on it (Python's includes U+001C–U+001F, Rust's does not).
pub const WHITESPACE: &str =
    r"\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000";
/// The control characters free text may not hold (all but tab, LF and CR).
pub const TEXT_CONTROLS: &str = r"\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f";
/// Every control character (`char::is_control`).
pub const CONTROLS: &str = r"\x00-\x1f\x7f-\x9f";

/// A regex for strings of characters outside `forbidden` with at least one
/// that is not whitespace either.
pub fn not_blank_pattern(forbidden: &str) -> String {
    format!("^[^{forbidden}]*[^{forbidden}{WHITESPACE}][^{forbidden}]*$")
}

/// Checks free text (titles, bodies): at least one character that is not
/// whitespace, no control characters but tab, LF and CR, at most `max`
/// characters (not bytes). Stored as given.
pub fn text_field(field: &str, value: &str, max: usize) -> Result<String, FieldError> {
    if value.trim().is_empty() {
        return Err(FieldError::new(field, "must not be empty"));
    }
    if value
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
    {
        return Err(FieldError::new(
            field,
            "must not contain control characters other than tab and newline",
        ));
    }
    if value.chars().count() > max {
        return Err(FieldError::new(
            field,
            format!("must be at most {max} characters"),
        ));
    }
    Ok(value.to_owned())
}

/// The schema of a [`text_field`] of at most `max` characters.
pub fn text(max: usize, example: &str) -> Object {
    string(1, max, &not_blank_pattern(TEXT_CONTROLS), example)
}

/// The schema of an optional [`text_field`]: `null` means "not given".
pub fn text_or_null(max: usize, example: &str) -> Object {
    or_null(text(max, example))
}

/// `schema`, also allowing `null` (an `Option` field).
pub fn or_null(mut schema: Object) -> Object {
    schema.schema_type = SchemaType::from_iter([Type::String, Type::Null]);
    schema
}

/// A string schema: lengths in characters, a regex, an example.
pub fn string(min: usize, max: usize, pattern: &str, example: &str) -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(min))
        .max_length(Some(max))
        .pattern(Some(pattern))
        .examples([json!(example)])
        .build()
}

/// Whether `text` is a UUID in the hyphenated form of JSON Schema's `uuid`
/// format (either case). Stricter than `Uuid::parse_str`, which also takes
/// braces, URNs and no hyphens.
pub fn is_uuid(text: &str) -> bool {
    text.len() == 36
        && text.bytes().enumerate().all(|(i, byte)| match i {
            8 | 13 | 18 | 23 => byte == b'-',
            _ => byte.is_ascii_hexdigit(),
        })
}

/// A UUID path or query parameter (ids are UUIDv7).
pub fn uuid(example: &str) -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid)))
        .examples([json!(example)])
        .build()
}

/// Adds to each operation of `doc` the answers of the layers it goes
/// through, unless the operation already describes them, and the `Problem`
/// schema they use.
pub fn complete(doc: &mut Value) {
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    for item in paths.values_mut() {
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        for (method, operation) in item.iter_mut() {
            if !METHODS.contains(&method.as_str()) {
                continue;
            }
            for (status, description) in layer_answers(operation) {
                add_problem_answer(operation, status, description);
            }
        }
    }
    let schemas = doc
        .pointer_mut("/components")
        .and_then(Value::as_object_mut);
    if let Some(components) = schemas {
        let schemas = components.entry("schemas").or_insert_with(|| json!({}));
        if schemas.get("Problem").is_none() {
            schemas["Problem"] = problem_schema();
            schemas["FieldError"] = field_error_schema();
        }
    } else {
        doc["components"] = json!({"schemas": {
            "Problem": problem_schema(), "FieldError": field_error_schema()}});
    }
}

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// The statuses the chassis' layers can answer for this operation.
fn layer_answers(operation: &Value) -> Vec<(&'static str, &'static str)> {
    let mut answers = Vec::new();
    if operation.get("requestBody").is_some() {
        answers.push((
            "400",
            "the body is not JSON, has a value of the wrong type, an unknown field or lacks a required one",
        ));
        answers.push(("413", "the body is larger than this endpoint accepts"));
        answers.push(("415", "the body is not `application/json`"));
    }
    let has_query = operation["parameters"]
        .as_array()
        .is_some_and(|params| params.iter().any(|p| p["in"] == "query"));
    if has_query {
        answers.push(("400", "a query parameter is malformed"));
    }
    let secured = operation["security"]
        .as_array()
        .is_some_and(|requirements| {
            !requirements.is_empty()
                && requirements
                    .iter()
                    .all(|r| r.as_object().is_some_and(|r| !r.is_empty()))
        });
    if secured {
        answers.push((
            "401",
            "no access token, or one that is invalid, expired or of a deleted account",
        ));
    }
    answers
}

/// Adds a problem+json answer with `status` unless the operation has one.
pub fn add_problem_answer(operation: &mut Value, status: &str, description: &str) {
    let responses = operation
        .as_object_mut()
        .map(|op| op.entry("responses").or_insert_with(|| json!({})));
    let Some(responses) = responses.and_then(Value::as_object_mut) else {
        return;
    };
    responses
        .entry(status)
        .or_insert_with(|| problem_answer(description));
}

/// A response object whose body is a `Problem`.
pub fn problem_answer(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/problem+json": {
            "schema": {"$ref": "#/components/schemas/Problem"}}}
    })
}

/// The schemas of `Problem` and `FieldError`, as every service derives them.
fn problem_schema() -> Value {
    serde_json::to_value(<dure_contracts::Problem as utoipa::PartialSchema>::schema())
        .unwrap_or_default()
}

fn field_error_schema() -> Value {
    serde_json::to_value(<FieldError as utoipa::PartialSchema>::schema()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_rules() {
        assert!(text_field("t", "Hello\tworld\r\n", 20).is_ok());
        for bad in ["", " \n\t", "a\u{0}b", "a\u{1f}b", "a\u{85}b", "\u{3000}"] {
            assert!(text_field("t", bad, 20).is_err(), "{bad:?}");
        }
        assert!(text_field("t", &"é".repeat(20), 20).is_ok());
        assert!(text_field("t", &"é".repeat(21), 20).is_err());
    }

    #[test]
    fn uuids_in_the_hyphenated_form_only() {
        assert!(is_uuid("01A2B3C4-0000-7000-8000-00000000abcd"));
        for bad in [
            "01a2b3c40000700080000000000abcd",
            "{01a2b3c4-0000-7000-8000-00000000abcd}",
            "x",
        ] {
            assert!(!is_uuid(bad), "{bad}");
        }
    }

    #[test]
    fn completes_operations_by_what_they_take() {
        let mut doc = json!({"paths": {"/a": {
            "post": {"requestBody": {}, "security": [{"bearer": []}],
                     "responses": {"201": {"description": "made"}}},
            "get": {"parameters": [{"in": "query", "name": "limit"}],
                    "responses": {"200": {"description": "ok"}}},
            "parameters": []
        }}, "components": {}});
        complete(&mut doc);
        let post = &doc["paths"]["/a"]["post"]["responses"];
        for status in ["201", "400", "401", "413", "415"] {
            assert!(post.get(status).is_some(), "{status}");
        }
        let get = &doc["paths"]["/a"]["get"]["responses"];
        assert!(get.get("400").is_some());
        assert!(get.get("401").is_none() && get.get("415").is_none());
        assert!(doc["components"]["schemas"]["Problem"].is_object());
    }
}
