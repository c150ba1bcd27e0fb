//! The IETF resumable-upload draft (`http::resumable`) on the tus operations: its headers as
//! optional parameters and its answers beside tus's, added here so that the tus annotations
//! stay tus. What OpenAPI cannot say (the `104` interim response, which headers go with which
//! interop version) is in the parameters' descriptions and the README.

use utoipa::openapi::header::Header;
use utoipa::openapi::path::{Operation, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{ObjectBuilder, SchemaFormat, Type};
use utoipa::openapi::{Content, OpenApi as Document, Ref, RefOr, Required, Response, ResponseBuilder};

use super::shared_answers::operations_mut;
use crate::http::resumable::problem::PROBLEM_JSON;
use crate::http::resumable::{PARTIAL_UPLOAD, SUPPORTED};

/// `Upload-Complete` and `Upload-Incomplete`: an sf-boolean.
pub const BOOLEAN_PATTERN: &str = r"^\?[01]$";

pub fn add(doc: &mut Document) {
    for (path, item) in doc.paths.paths.iter_mut() {
        if path != "/files" && path != "/files/" && path != "/files/{id}" {
            continue;
        }
        for (method, operation) in operations_mut(item) {
            match method {
                "post" => creation(operation),
                "head" => offset(operation),
                "patch" => append(operation),
                "delete" => parameter(operation, interop_version()),
                _ => {}
            }
        }
    }
}

fn creation(operation: &mut Operation) {
    parameter(operation, interop_version());
    parameter(operation, completeness("Upload-Complete", "?1: the body is the whole file; ?0: more follows"));
    parameter(operation, completeness("Upload-Incomplete", "interop version 3's inverse of Upload-Complete"));
    body(operation, "application/octet-stream");
    if let Some(created) = response(operation, "201") {
        state_headers(created);
    }
    problems(operation, "400");
    limited(operation);
}

fn offset(operation: &mut Operation) {
    parameter(operation, interop_version());
    let mut answer = ResponseBuilder::new()
        .description("Draft: the upload's offset, completeness, length (once known) and limits")
        .build();
    state_headers(&mut answer);
    operation.responses.responses.insert("204".to_owned(), RefOr::T(answer));
}

fn append(operation: &mut Operation) {
    parameter(operation, interop_version());
    parameter(operation, completeness("Upload-Complete", "?1: this append completes the upload"));
    parameter(operation, completeness("Upload-Incomplete", "interop version 3's inverse of Upload-Complete"));
    body(operation, PARTIAL_UPLOAD);
    if let Some(acknowledged) = response(operation, "204") {
        state_headers(acknowledged);
    }
    let mut complete = ResponseBuilder::new().description("Draft: the upload is complete").build();
    state_headers(&mut complete);
    operation.responses.responses.insert("200".to_owned(), RefOr::T(complete));
    problems(operation, "400");
    problems(operation, "409");
    limited(operation);
}

fn interop_version() -> ParameterBuilder {
    let versions = ObjectBuilder::new()
        .schema_type(Type::Integer)
        .minimum(Some(*SUPPORTED.start()))
        .maximum(Some(*SUPPORTED.end()));
    ParameterBuilder::new()
        .name(crate::http::resumable::INTEROP_HEADER)
        .description(Some(
            "The request speaks the IETF resumable-upload draft at this interop version instead of tus \
             (Tus-Resumable is then not needed). On HTTP/1.1 (plain or TLS) a creation is answered first by \
             104 Upload Resumption Supported with Location, this version and Upload-Limit. As with tus, a \
             HEAD, PATCH or DELETE first cuts any earlier request still streaming into the upload (its bytes \
             are kept).",
        ))
        .schema(Some(versions))
}

fn completeness(name: &str, description: &str) -> ParameterBuilder {
    ParameterBuilder::new()
        .name(name)
        .description(Some(format!("Draft: {description}; required by draft requests")))
        .schema(Some(ObjectBuilder::new().schema_type(Type::String).pattern(Some(BOOLEAN_PATTERN))))
}

fn parameter(operation: &mut Operation, builder: ParameterBuilder) {
    let parameter = builder.parameter_in(ParameterIn::Header).required(Required::False).build();
    operation.parameters.get_or_insert_with(Vec::new).push(parameter.into());
}

/// The draft's bodies are raw bytes (the creation's of any type; described as octet-stream).
fn body(operation: &mut Operation, media_type: &str) {
    if let Some(RefOr::T(body)) = operation.request_body.as_mut() {
        let binary = ObjectBuilder::new().schema_type(Type::String).format(Some(SchemaFormat::Custom("binary".into())));
        body.content.insert(media_type.to_owned(), Content::new(Some(binary)).into());
    }
}

fn response<'a>(operation: &'a mut Operation, status: &str) -> Option<&'a mut Response> {
    match operation.responses.responses.get_mut(status)? {
        RefOr::T(response) => Some(response),
        RefOr::Ref(_) => None,
    }
}

fn state_headers(response: &mut Response) {
    let text = || Header::new(ObjectBuilder::new().schema_type(Type::String));
    let number = || Header::new(ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(0)));
    response.headers.entry("Upload-Offset".to_owned()).or_insert_with(|| number().into());
    response.headers.insert("Upload-Complete".to_owned(), text().into());
    response.headers.entry("Upload-Length".to_owned()).or_insert_with(|| number().into());
    response.headers.insert("Upload-Limit".to_owned(), text().into());
}

/// Draft requests get some errors as the draft's problem types.
fn problems(operation: &mut Operation, status: &str) {
    if let Some(response) = response(operation, status) {
        let schema = Content::new(Some(Ref::from_schema_name("ProblemBody")));
        response.content.insert(PROBLEM_JSON.to_owned(), schema.into());
    }
}

/// A 413 says the limits it applied.
fn limited(operation: &mut Operation) {
    if let Some(response) = response(operation, "413") {
        response
            .headers
            .insert("Upload-Limit".to_owned(), Header::new(ObjectBuilder::new().schema_type(Type::String)).into());
    }
}
