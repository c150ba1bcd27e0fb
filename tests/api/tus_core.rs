use base64::Engine;
use reqwest::Method;
use sha2::Digest;

use crate::helpers::{bytes, error_code, header_str, header_u64, location, spawn_app, Backend};
use crate::on_every_backend;

async fn options_advertises_the_protocol(backend: Backend) {
    let app = spawn_app(backend).await;
    let response = app.client.request(Method::OPTIONS, app.files_url()).send().await.unwrap();
    assert_eq!(response.status(), 204);
    let h = response.headers();
    assert_eq!(header_str(h, "Tus-Version"), "1.0.0");
    let extensions = header_str(h, "Tus-Extension");
    for ext in [
        "creation",
        "creation-with-upload",
        "creation-defer-length",
        "expiration",
        "checksum",
        "termination",
        "concatenation",
    ] {
        assert!(extensions.split(',').any(|e| e == ext), "{ext} missing from {extensions}");
    }
    assert_eq!(header_u64(h, "Tus-Max-Size"), app.settings.uploads.max_size);
    assert_eq!(header_str(h, "Tus-Checksum-Algorithm"), "sha1,md5,sha256,crc32c");
}
on_every_backend!(options_advertises_the_protocol);

async fn a_request_without_tus_resumable_gets_412(backend: Backend) {
    let app = spawn_app(backend).await;
    let response =
        app.client.post(app.files_url()).bearer_auth(&app.alice).header("Upload-Length", "5").send().await.unwrap();
    assert_eq!(response.status(), 412);
    assert_eq!(header_str(response.headers(), "Tus-Version"), "1.0.0");
    assert_eq!(error_code(response).await, "tus_version_unsupported");
    let response = app
        .client
        .post(app.files_url())
        .bearer_auth(&app.alice)
        .header("Tus-Resumable", "0.2.2")
        .header("Upload-Length", "5")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 412);
}
on_every_backend!(a_request_without_tus_resumable_gets_412);

async fn chunks_assemble_into_the_exact_file(backend: Backend) {
    let app = spawn_app(backend).await;
    let data = bytes(300_000, 7);
    let response = app
        .tus(Method::POST, &app.files_url())
        .header("Upload-Length", data.len().to_string())
        .header(
            "Upload-Metadata",
            format!(
                "filename {},filetype {}",
                base64::engine::general_purpose::STANDARD.encode("../report.pdf"),
                base64::engine::general_purpose::STANDARD.encode("application/pdf")
            ),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    assert!(response.headers().get("Upload-Expires").is_some());
    let url = location(&response);
    let mut offset = 0;
    for chunk in data.chunks(70_000) {
        let response = app.patch(&url, offset, chunk).await;
        assert_eq!(response.status(), 204);
        offset += chunk.len() as u64;
        assert_eq!(header_u64(response.headers(), "Upload-Offset"), offset);
    }
    let head = app.head(&url).await;
    assert_eq!(head.status(), 200);
    assert_eq!(header_str(head.headers(), "Cache-Control"), "no-store");
    assert_eq!(header_u64(head.headers(), "Upload-Length"), data.len() as u64);
    assert!(header_str(head.headers(), "Upload-Metadata").starts_with("filename "));

    let download = app.download(&url).await;
    assert_eq!(download.status(), 200);
    assert_eq!(header_str(download.headers(), "Content-Type"), "application/pdf");
    assert_eq!(header_str(download.headers(), "Content-Disposition"), "attachment; filename=\"report.pdf\"");
    assert!(download.headers().get("ETag").is_some());
    assert_eq!(download.bytes().await.unwrap().to_vec(), data);

    let ranged = app.download_with(&url, |r| r.header("Range", "bytes=10-19")).await;
    assert_eq!(ranged.status(), 206);
    assert_eq!(ranged.bytes().await.unwrap().to_vec(), data[10..20].to_vec());
}
on_every_backend!(chunks_assemble_into_the_exact_file);

async fn a_wrong_offset_gets_409_with_the_current_one(backend: Backend) {
    let app = spawn_app(backend).await;
    let url = app.create_upload(10).await;
    assert_eq!(app.patch(&url, 0, b"abcd").await.status(), 204);
    let response = app.patch(&url, 2, b"xx").await;
    assert_eq!(response.status(), 409);
    assert_eq!(header_u64(response.headers(), "Upload-Offset"), 4);
    assert_eq!(error_code(response).await, "offset_mismatch");
    assert_eq!(app.offset(&url).await, 4);
}
on_every_backend!(a_wrong_offset_gets_409_with_the_current_one);

async fn bytes_beyond_the_length_are_refused_and_never_stored(backend: Backend) {
    let app = spawn_app(backend).await;
    let url = app.create_upload(10).await;
    assert_eq!(app.patch(&url, 0, b"abcd").await.status(), 204);
    // Declared too long up front…
    let response = app.patch(&url, 4, b"0123456789").await;
    assert_eq!(response.status(), 413);
    assert_eq!(error_code(response).await, "exceeds_upload_length");
    // …or streamed without a length.
    let stream = futures_util::stream::iter(vec![Ok::<_, std::io::Error>(b"0123456789".to_vec())]);
    let response = app.patch_request(&url, 4, reqwest::Body::wrap_stream(stream)).send().await.unwrap();
    assert_eq!(response.status(), 413);
    assert_eq!(app.offset(&url).await, 4);
    assert_eq!(app.patch(&url, 4, b"efghij").await.status(), 204);
    assert_eq!(app.download_bytes(&url).await, b"abcdefghij");
}
on_every_backend!(bytes_beyond_the_length_are_refused_and_never_stored);

/// A client that resends its last, empty PATCH (or probes with one) after the upload is
/// complete gets the offset, not an error; a byte more is refused. On S3 the empty PATCH
/// once answered 500: the store tried to upload the last part again from a staged tail the
/// completion had deleted.
async fn a_complete_upload_takes_an_empty_patch_at_its_length_and_no_byte_more(backend: Backend) {
    let app = spawn_app(backend).await;
    let url = app.create_upload(10).await;
    assert_eq!(app.patch(&url, 0, b"0123456789").await.status(), 204);
    let response = app.patch(&url, 10, b"").await;
    assert_eq!(response.status(), 204);
    assert_eq!(header_u64(response.headers(), "Upload-Offset"), 10);
    let response = app.patch(&url, 10, b"x").await;
    assert_eq!(response.status(), 413);
    assert_eq!(error_code(response).await, "exceeds_upload_length");
    assert_eq!(app.offset(&url).await, 10);
    assert_eq!(app.download_bytes(&url).await, b"0123456789");
}
on_every_backend!(a_complete_upload_takes_an_empty_patch_at_its_length_and_no_byte_more);

fn checksum_header(algorithm: &str, data: &[u8]) -> String {
    let digest = match algorithm {
        "sha1" => sha1::Sha1::digest(data).to_vec(),
        "md5" => md5::Md5::digest(data).to_vec(),
        "sha256" => sha2::Sha256::digest(data).to_vec(),
        "crc32c" => crc32c::crc32c(data).to_be_bytes().to_vec(),
        other => panic!("{other}"),
    };
    format!("{algorithm} {}", base64::engine::general_purpose::STANDARD.encode(digest))
}

async fn checksums_are_verified_per_chunk(backend: Backend) {
    let app = spawn_app(backend).await;
    let url = app.create_upload(40).await;
    let mut offset = 0;
    for algorithm in ["sha1", "md5", "sha256", "crc32c"] {
        let chunk = bytes(10, offset as u8);
        // A corrupted chunk: 460, discarded, offset unchanged.
        let mut corrupted = chunk.clone();
        corrupted[3] ^= 0xff;
        let response = app
            .patch_request(&url, offset, corrupted)
            .header("Upload-Checksum", checksum_header(algorithm, &chunk))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 460, "{algorithm}");
        assert_eq!(error_code(response).await, "checksum_mismatch");
        assert_eq!(app.offset(&url).await, offset);
        let response = app
            .patch_request(&url, offset, chunk.clone())
            .header("Upload-Checksum", checksum_header(algorithm, &chunk))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 204, "{algorithm}");
        offset += 10;
    }
    let response =
        app.patch_request(&url, offset, b"x".to_vec()).header("Upload-Checksum", "sha512 AAAA").send().await.unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(error_code(response).await, "checksum_algorithm_unsupported");
    let expected: Vec<u8> = (0..4).flat_map(|i| bytes(10, i * 10)).collect();
    assert_eq!(app.download_bytes(&url).await, expected);
}
on_every_backend!(checksums_are_verified_per_chunk);

async fn creation_with_upload_stores_the_first_chunk(backend: Backend) {
    let app = spawn_app(backend).await;
    let response = app
        .tus(Method::POST, &app.files_url())
        .header("Upload-Length", "11")
        .header("Content-Type", "application/offset+octet-stream")
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    assert_eq!(header_u64(response.headers(), "Upload-Offset"), 5);
    let url = location(&response);
    assert_eq!(app.patch(&url, 5, b" world").await.status(), 204);
    assert_eq!(app.download_bytes(&url).await, b"hello world");
}
on_every_backend!(creation_with_upload_stores_the_first_chunk);

async fn a_deferred_length_is_declared_later(backend: Backend) {
    let app = spawn_app(backend).await;
    let response = app.tus(Method::POST, &app.files_url()).header("Upload-Defer-Length", "1").send().await.unwrap();
    assert_eq!(response.status(), 201);
    let url = location(&response);
    assert_eq!(header_str(app.head(&url).await.headers(), "Upload-Defer-Length"), "1");
    assert_eq!(app.patch(&url, 0, b"abc").await.status(), 204);
    let download = app.download(&url).await;
    assert_eq!(download.status(), 409, "not complete until the length is known");
    // The last chunk carries the length; its bytes are all kept.
    let response = app.patch_request(&url, 3, b"defg".to_vec()).header("Upload-Length", "7").send().await.unwrap();
    assert_eq!(response.status(), 204);
    let head = app.head(&url).await;
    assert_eq!(header_u64(head.headers(), "Upload-Length"), 7);
    assert_eq!(app.download_bytes(&url).await, b"abcdefg");
    // Both at once is a client error.
    let response = app
        .tus(Method::POST, &app.files_url())
        .header("Upload-Defer-Length", "1")
        .header("Upload-Length", "3")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
}
on_every_backend!(a_deferred_length_is_declared_later);

async fn a_zero_length_upload_is_complete_at_once(backend: Backend) {
    let app = spawn_app(backend).await;
    let url = app.create_upload(0).await;
    let head = app.head(&url).await;
    assert_eq!(header_u64(head.headers(), "Upload-Offset"), 0);
    assert!(head.headers().get("Upload-Expires").is_none());
    assert_eq!(app.download_bytes(&url).await, b"");
}
on_every_backend!(a_zero_length_upload_is_complete_at_once);

async fn limits_and_bad_headers_get_stable_codes(backend: Backend) {
    let app = spawn_app(backend).await;
    let too_big = app.create(app.settings.uploads.max_size + 1).await;
    assert_eq!(too_big.status(), 413);
    assert_eq!(error_code(too_big).await, "upload_too_large");
    let cases: &[(&str, &str, &str)] = &[
        ("Upload-Length", "-1", "invalid_upload_length"),
        ("Upload-Length", "12abc", "invalid_upload_length"),
        ("Upload-Metadata", "a YQ==,a Yg==", "invalid_metadata"),
        ("Upload-Metadata", "name not*base64", "invalid_metadata"),
        ("Upload-Concat", "whole", "invalid_upload_concat"),
    ];
    for (name, value, code) in cases {
        let mut request = app.tus(Method::POST, &app.files_url()).header(*name, *value);
        if *name != "Upload-Length" {
            request = request.header("Upload-Length", "5");
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 400, "{name}: {value}");
        assert_eq!(error_code(response).await, *code, "{name}: {value}");
    }
    let huge = format!("k {}", "QUFB".repeat(2000));
    let response = app
        .tus(Method::POST, &app.files_url())
        .header("Upload-Length", "5")
        .header("Upload-Metadata", huge)
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(response).await, "metadata_too_large");

    let bad_id = app.head(&format!("{}/not-an-id", app.files_url())).await;
    assert_eq!(bad_id.status(), 400);
    let unknown = app.head(&format!("{}/{}", app.files_url(), "0".repeat(32))).await;
    assert_eq!(unknown.status(), 404);
    let url = app.create_upload(5).await;
    let wrong_type = app
        .tus(Method::PATCH, &url)
        .header("Upload-Offset", "0")
        .header("Content-Type", "text/plain")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_type.status(), 415);
    let no_offset = app
        .tus(Method::PATCH, &url)
        .header("Content-Type", "application/offset+octet-stream")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(no_offset.status(), 400);
}
on_every_backend!(limits_and_bad_headers_get_stable_codes);

async fn method_override_turns_post_into_patch(backend: Backend) {
    let app = spawn_app(backend).await;
    let url = app.create_upload(3).await;
    let response = app
        .tus(Method::POST, &url)
        .header("X-HTTP-Method-Override", "PATCH")
        .header("Upload-Offset", "0")
        .header("Content-Type", "application/offset+octet-stream")
        .body("abc")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    assert_eq!(app.offset(&url).await, 3);
}
on_every_backend!(method_override_turns_post_into_patch);

async fn termination_frees_the_bytes_and_answers_410(backend: Backend) {
    let app = spawn_app(backend).await;
    let url = app.create_upload(10).await;
    assert_eq!(app.patch(&url, 0, b"abc").await.status(), 204);
    assert!(app.stored(&url).await);
    let response = app.tus(Method::DELETE, &url).send().await.unwrap();
    assert_eq!(response.status(), 204);
    assert!(!app.stored(&url).await, "bytes removed");
    assert_eq!(app.head(&url).await.status(), 410);
    let response = app.patch(&url, 3, b"d").await;
    assert_eq!(response.status(), 410);
    assert_eq!(error_code(response).await, "upload_terminated");
}
on_every_backend!(termination_frees_the_bytes_and_answers_410);

async fn head_right_after_patch_is_never_stale(backend: Backend) {
    let app = spawn_app(backend).await;
    let url = app.create_upload(2_000).await;
    for i in 0..40u64 {
        assert_eq!(app.patch(&url, i * 50, &bytes(50, i as u8)).await.status(), 204);
        assert_eq!(app.offset(&url).await, (i + 1) * 50);
    }
}
on_every_backend!(head_right_after_patch_is_never_stale);

async fn every_response_is_json_on_error_and_unknown_routes_404(backend: Backend) {
    let app = spawn_app(backend).await;
    let response = app.client.get(format!("{}/nope", app.address)).send().await.unwrap();
    assert_eq!(response.status(), 404);
    assert_eq!(error_code(response).await, "not_found");
    let live = app.client.get(format!("{}/health/live", app.address)).send().await.unwrap();
    assert_eq!(live.status(), 200);
    let ready = app.client.get(format!("{}/health/ready", app.address)).send().await.unwrap();
    assert_eq!(ready.status(), 200);
}
on_every_backend!(every_response_is_json_on_error_and_unknown_routes_404);

/// A tus path with a method it does not take is a 405 listing the methods it does (as tusd
/// answers), not a 404 that reads as "no such upload"; the upload is left as it was.
async fn a_tus_path_with_a_method_it_does_not_take_answers_405_with_allow(backend: Backend) {
    let app = spawn_app(backend).await;
    let url = app.create_upload(10).await;
    assert_eq!(app.patch(&url, 0, b"abc").await.status(), 204);
    let collection = format!("{}/files", app.address);
    let cases = [
        (Method::PUT, url.clone(), "OPTIONS, HEAD, PATCH, DELETE, GET"),
        (Method::POST, url.clone(), "OPTIONS, HEAD, PATCH, DELETE, GET"),
        (Method::GET, collection.clone(), "OPTIONS, POST"),
        (Method::DELETE, format!("{collection}/"), "OPTIONS, POST"),
    ];
    for (method, target, allow) in cases {
        let response = app.tus(method.clone(), &target).send().await.unwrap();
        assert_eq!(response.status(), 405, "{method} {target}");
        assert_eq!(response.headers()["Allow"], allow, "{method} {target}");
        assert_eq!(error_code(response).await, "method_not_allowed", "{method} {target}");
    }
    assert_eq!(app.offset(&url).await, 3);
    // A path Hoist does not serve at all is still a 404.
    let response =
        app.tus(Method::GET, &format!("{collection}/{}/parts", url.rsplit('/').next().unwrap())).send().await.unwrap();
    assert_eq!(response.status(), 404);
    assert_eq!(error_code(response).await, "not_found");
}
on_every_backend!(a_tus_path_with_a_method_it_does_not_take_answers_405_with_allow);
