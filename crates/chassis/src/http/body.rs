//! Reads a request's whole body before its handler runs.
//!
//! A handler that answers before reading the body (401 for a missing
//! token, 404 for an unknown posting) would leave unread bytes in the
//! socket; closing it then makes the kernel send a reset, and the client
//! (often the gateway, still writing the body) loses the answer and reports
//! 502. Reading the body first, up to the limit, and draining what lies
//! beyond it before a 413, means every answer reaches the client. Bodies
//! here are small JSON documents, so holding one in memory costs little.

use crate::error::ApiError;
use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;

/// Past the limit, at most this many times the limit is read and dropped
/// before the connection is given up on.
const DRAIN_FACTOR: usize = 16;

pub async fn read_whole(limit: usize, request: Request, next: Next) -> Response {
    let has_body = request.headers().contains_key(header::CONTENT_LENGTH)
        || request.headers().contains_key(header::TRANSFER_ENCODING);
    if !has_body {
        return next.run(request).await;
    }
    let (parts, mut body) = request.into_parts();
    let mut kept = Vec::new();
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            return ApiError::BadRequest("the request body could not be read".into())
                .into_response();
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        seen += data.len();
        if seen <= limit {
            kept.extend_from_slice(&data);
        } else if seen > limit.saturating_mul(DRAIN_FACTOR) {
            break;
        }
    }
    if seen > limit {
        return ApiError::PayloadTooLarge.into_response();
    }
    next.run(Request::from_parts(parts, Body::from(Bytes::from(kept))))
        .await
}
