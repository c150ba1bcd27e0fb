//! What every operation of a kind can answer, added to the description in one place so that
//! no handler's annotation can forget it: the bearer check, the admin role, the rate limiter
//! (it runs before routing, on every path but the probes and metrics), the upload id's shape
//! (checked before any lookup), the tus version check, and the shapes of the headers and
//! bodies the handlers parse. Answers an annotation already gives are left as they are.
//! Schemathesis holds the server to the result (tests/api/schemathesis.rs).

use utoipa::openapi::path::{Operation, Parameter, ParameterIn, PathItem};
use utoipa::openapi::schema::{ObjectBuilder, Schema, SchemaFormat, SchemaType, Type};
use utoipa::openapi::{ContentBuilder, OpenApi as Document, Ref, RefOr, ResponseBuilder};

/// The shape `UploadId::parse` accepts.
const UPLOAD_ID_PATTERN: &str = "^[0-9a-f]{32}$";

/// What `Idempotency-Key` takes (bare; the quoted sf-string form is accepted too).
const IDEMPOTENCY_KEY_PATTERN: &str = "^[!-~]{1,255}$";

/// `Upload-Checksum`: an algorithm of `Tus-Checksum-Algorithm` and its digest in canonical
/// base64 (the decoder refuses stray bits in the last character, hence its narrower class).
const CHECKSUM_PATTERN: &str = "^(md5 [A-Za-z0-9+/]{21}[AQgw]==|crc32c [A-Za-z0-9+/]{5}[AQgw]==\
                                |sha1 [A-Za-z0-9+/]{26}[AEIMQUYcgkosw048]=|sha256 [A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=)$";

/// `Upload-Concat`: `partial`, or `final;` and the partial uploads' URLs.
const CONCAT_PATTERN: &str = "^(partial|final;.+)$";

/// Form field names: anything but control characters and the quote that ends them (empty too:
/// a plain field is ignored whatever its name).
const FIELD_NAME_PATTERN: &str = r#"^[^\u0000-\u001f\u007f-\u009f"]*$"#;

const RATE_LIMITED: &str = "rate_limited: requests or body bytes over the caller's rate (Retry-After, RateLimit-*)";

pub fn add(doc: &mut Document) {
    for (path, item) in doc.paths.paths.iter_mut() {
        for (method, operation) in operations_mut(item) {
            complete(path, method, operation);
        }
    }
}

/// Every operation of a path item, whatever its method.
pub fn operations_mut(item: &mut PathItem) -> impl Iterator<Item = (&'static str, &mut Operation)> {
    [
        ("get", &mut item.get),
        ("put", &mut item.put),
        ("post", &mut item.post),
        ("delete", &mut item.delete),
        ("options", &mut item.options),
        ("head", &mut item.head),
        ("patch", &mut item.patch),
    ]
    .into_iter()
    .filter_map(|(method, operation)| operation.as_mut().map(|operation| (method, operation)))
}

fn complete(path: &str, method: &str, operation: &mut Operation) {
    describe_bodies(operation);
    let probe_or_metrics = path.starts_with("/health/") || path == "/metrics";
    // Discovery answers on any path under /files, checking nothing, so only the limiter can refuse it.
    if method == "options" {
        answer(operation, "429", RATE_LIMITED, true);
        return;
    }
    // HEAD answers carry no body, errors included.
    let body = method != "head";
    let secured = operation.security.as_ref().is_some_and(|requirements| !requirements.is_empty());
    let mut takes_input = operation.request_body.is_some();
    let mut has_upload_id = false;
    let mut checks_tus_version = false;
    let mut takes_idempotency_key = false;
    for parameter in operation.parameters.iter_mut().flatten() {
        let RefOr::T(parameter) = parameter else { continue };
        drop_null(parameter);
        // Any header or query can be malformed; of the path parameters only the id is checked.
        takes_input |= parameter.parameter_in != ParameterIn::Path;
        if parameter.parameter_in == ParameterIn::Path && parameter.name == "id" {
            constrain(parameter, ObjectBuilder::new().schema_type(Type::String).pattern(Some(UPLOAD_ID_PATTERN)));
            parameter.description.get_or_insert_with(|| "32 lowercase hex digits".to_owned());
            has_upload_id = true;
            takes_input = true;
        }
        if parameter.parameter_in == ParameterIn::Header {
            let text = || ObjectBuilder::new().schema_type(Type::String);
            let schema = match parameter.name.as_str() {
                "Idempotency-Key" => Some(text().pattern(Some(IDEMPOTENCY_KEY_PATTERN))),
                // The md5 of `foo`: generators that cannot draw from the pattern start here.
                "Upload-Checksum" => {
                    Some(text().pattern(Some(CHECKSUM_PATTERN)).examples(["md5 rL0Y20zC+Fzt72VPzMSk2A=="]))
                }
                "Upload-Concat" => Some(text().pattern(Some(CONCAT_PATTERN))),
                "Tus-Resumable" => Some(text().enum_values(Some(["1.0.0"]))),
                _ => None,
            };
            if let Some(schema) = schema {
                constrain(parameter, schema);
            }
            takes_idempotency_key |= parameter.name == "Idempotency-Key";
            checks_tus_version |= parameter.name == "Tus-Resumable";
        }
    }
    if takes_input {
        answer(
            operation,
            "400",
            "Bad request: a stable code says which input (invalid_upload_id, invalid_query, ...)",
            body,
        );
    }
    if secured {
        answer(
            operation,
            "401",
            "unauthorized: missing, expired or invalid bearer token (WWW-Authenticate: Bearer)",
            body,
        );
    }
    if path.starts_with("/admin/") {
        answer(operation, "403", "forbidden: the token's role is not admin", body);
    }
    if checks_tus_version {
        answer(operation, "412", "tus_version_unsupported: Tus-Resumable is missing or not 1.0.0", body);
    }
    if takes_idempotency_key {
        answer(
            operation,
            "409",
            "idempotency_request_in_flight: the first request with this key is still running (a retried PATCH cuts \
             it instead and replays its answer)",
            body,
        );
        answer(operation, "422", "idempotency_key_reused: the key was used with a different request", body);
    }
    if !probe_or_metrics {
        answer(operation, "429", RATE_LIMITED, body);
    }
    if secured || has_upload_id {
        answer(operation, "503", "Database or store unavailable (Retry-After)", body);
    }
}

/// Request bodies as what goes on the wire: tus chunks are raw bytes (the annotations' `Vec<u8>`
/// would read as a JSON array of numbers), and the one-shot form takes file parts under any
/// field name (`file` here), each part with a filename becoming one upload.
fn describe_bodies(operation: &mut Operation) {
    let Some(RefOr::T(body)) = operation.request_body.as_mut() else { return };
    for (media_type, content) in body.content.iter_mut() {
        let RefOr::T(content) = content else { continue };
        if media_type.ends_with("octet-stream") {
            content.schema = Some(RefOr::T(binary().build().into()));
        } else if media_type == "multipart/form-data" {
            let names = ObjectBuilder::new().schema_type(Type::String).pattern(Some(FIELD_NAME_PATTERN));
            let form = ObjectBuilder::new()
                .schema_type(Type::Object)
                .property("file", binary())
                .required("file")
                .property_names(Some(names));
            content.schema = Some(RefOr::T(form.build().into()));
        }
    }
}

fn binary() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::String).format(Some(SchemaFormat::Custom("binary".to_owned())))
}

/// An `Option<u64>` header reads as `integer | null`; on the wire an optional header is
/// absent, never `null`, and the text `null` is refused like any other non-number.
fn drop_null(parameter: &mut Parameter) {
    if let Some(RefOr::T(Schema::Object(object))) = parameter.schema.as_mut() {
        if let SchemaType::Array(types) = &mut object.schema_type {
            types.retain(|kind| *kind != Type::Null);
            if let [only] = types.as_slice() {
                object.schema_type = SchemaType::Type(only.clone());
            }
        }
    }
}

fn constrain(parameter: &mut Parameter, schema: ObjectBuilder) {
    parameter.schema = Some(RefOr::T(schema.build().into()));
}

/// Adds `status` (with an `ErrorBody` if `body`) unless the annotation already answers it.
fn answer(operation: &mut Operation, status: &str, description: &str, body: bool) {
    operation.responses.responses.entry(status.to_owned()).or_insert_with(|| {
        let mut response = ResponseBuilder::new().description(description);
        if body {
            let error = ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build();
            response = response.content("application/json", error);
        }
        RefOr::T(response.build())
    });
}
