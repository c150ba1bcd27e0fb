//! The OpenAPI 3.1 description, built from the handlers' own `#[utoipa::path]`
//! annotations, served at `/openapi.json`, with Swagger UI at `/docs/` from assets
//! vendored in the binary.

use std::sync::OnceLock;

use utoipa::openapi::path::{HttpMethod, OperationBuilder, Parameter, ParameterBuilder, ParameterIn, PathItem};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::Required;
use utoipa::openapi::{OpenApi as Document, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use super::admin::{ExpiryBody, Lease, Part, UploadDetail, UploadPage, UploadView};
use super::form::{FormResponse, FormUpload};
use crate::error::ErrorBody;
use crate::http::resumable::problem::ProblemBody;

mod draft;
mod shared_answers;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Hoist",
        description = "Resumable uploads: tus 1.0.0 (core, creation, creation-with-upload, creation-defer-length, \
                       expiration, checksum, termination, concatenation) and, on the same routes for requests \
                       with Upload-Draft-Interop-Version (3 to 8), the IETF resumable-upload draft (with its \
                       104 interim response on HTTP/1.1); one-shot multipart forms, signed downloads, an \
                       admin API and operations endpoints. Errors are JSON {code, message}; draft requests get \
                       the draft's problem types as application/problem+json."
    ),
    paths(
        super::tus::options,
        super::tus::create::create,
        super::tus::head::head,
        super::tus::patch::patch,
        super::tus::head::terminate,
        super::download::download,
        super::download::signed_download,
        super::form::upload_form,
        super::admin::list,
        super::admin::show,
        super::admin::terminate,
        super::admin::set_expiry,
        super::admin::stats,
        super::admin::sessions,
        super::health::metrics,
        super::health::live,
        super::health::ready,
    ),
    components(schemas(ErrorBody, ProblemBody, UploadView, Lease, Part, UploadPage, UploadDetail, ExpiryBody, FormResponse, FormUpload)),
    modifiers(&Extras),
    tags(
        (name = "tus", description = "tus 1.0.0, and the IETF resumable-upload draft"),
        (name = "forms", description = "One-shot multipart/form-data uploads"),
        (name = "downloads", description = "Completed uploads"),
        (name = "admin", description = "Admin role only"),
        (name = "operations", description = "Probes, metrics and this description"),
    )
)]
pub struct ApiDoc;

/// What the annotations cannot say: the bearer scheme, the tus endpoints' trailing-slash
/// spellings (tus clients use both), and the description and docs routes themselves.
struct Extras;

impl Modify for Extras {
    fn modify(&self, doc: &mut Document) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::builder().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build()),
        );
        if let Some(files) = doc.paths.paths.get("/files").cloned() {
            if let (Some(upload), Some(mut options)) = (doc.paths.paths.get_mut("/files/{id}"), files.options.clone()) {
                options.parameters.get_or_insert_with(Vec::new).push(path_parameter("id", "32 hex digits").into());
                upload.options = Some(options);
            }
            doc.paths.paths.insert("/files/".to_owned(), files);
        }
        let get = |summary: &str, content_type: &str, parameters: Vec<Parameter>| {
            let ok = ResponseBuilder::new()
                .description(summary)
                .content(content_type, utoipa::openapi::Content::default())
                .build();
            let operation = OperationBuilder::new()
                .summary(Some(summary))
                .tag("operations")
                .parameters(Some(parameters))
                .response("200", ok)
                .build();
            PathItem::new(HttpMethod::Get, operation)
        };
        let asset = path_parameter("path", "index.html, or one of the page's assets");
        doc.paths.paths.insert("/openapi.json".to_owned(), get("This OpenAPI description", "application/json", vec![]));
        let mut docs = get("Swagger UI for this description", "text/html", vec![asset]);
        if let Some(page) = docs.get.as_mut() {
            let missing = ResponseBuilder::new().description("No such asset").build();
            page.responses.responses.insert("404".to_owned(), missing.into());
        }
        doc.paths.paths.insert("/docs/{path}".to_owned(), docs);
        shared_answers::add(doc);
        draft::add(doc);
        name_operations(doc);
    }
}

fn path_parameter(name: &str, description: &str) -> Parameter {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Path)
        .required(Required::True)
        .description(Some(description))
        .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
        .build()
}

/// Operation ids from method and path (`patch_files_id`), unique by construction: the
/// handlers' names repeat (`terminate`) and the trailing-slash copies share theirs.
fn name_operations(doc: &mut Document) {
    for (path, item) in doc.paths.paths.iter_mut() {
        let slug: String = path
            .split(|c: char| !c.is_ascii_alphanumeric())
            .filter(|part| !part.is_empty())
            .collect::<Vec<_>>()
            .join("_");
        let slug = if path.ends_with('/') && path.len() > 1 { format!("{slug}_slash") } else { slug };
        for (method, operation) in shared_answers::operations_mut(item) {
            operation.operation_id = Some(format!("{method}_{slug}"));
        }
    }
}

/// The document, built once.
pub fn document() -> &'static Document {
    static DOCUMENT: OnceLock<Document> = OnceLock::new();
    DOCUMENT.get_or_init(ApiDoc::openapi)
}
